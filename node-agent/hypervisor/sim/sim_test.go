/*
Copyright The Vessel Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package sim

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

const uid = "0b4f8a52-7d6e-4c3b-9a1f-2e5d6c7b8a90"

func config() *hypervisor.DomainConfig {
	return &hypervisor.DomainConfig{
		Owner:     hypervisor.Owner{Namespace: "ns", Name: "vm", UID: uid, Hypervisor: "sim-1"},
		SpecHash:  "h1",
		CPUs:      1,
		MemoryKiB: 131072,
	}
}

// nextEvent waits for the domain's next event.
func nextEvent(t *testing.T, h *Hypervisor) hypervisor.Event {
	t.Helper()
	select {
	case ev := <-h.Events():
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return hypervisor.Event{}
	}
}

func state(t *testing.T, h *Hypervisor) (hypervisor.State, hypervisor.Reason) {
	t.Helper()
	d, err := h.Lookup(context.Background(), uid)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	return d.State, d.Reason
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	h := New(Latencies{})
	defer h.Close()

	if _, err := h.Lookup(ctx, uid); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("Lookup before Define = %v, want ErrNotFound", err)
	}
	if err := h.Start(ctx, uid, false); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("Start before Define = %v, want ErrNotFound", err)
	}
	if err := h.Define(ctx, config()); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, h); ev.UUID != uid {
		t.Fatalf("event %+v, want one for %s", ev, uid)
	}
	if s, _ := state(t, h); s != hypervisor.StateShutoff {
		t.Fatalf("defined domain is %s, want Shutoff", s)
	}
	d, _ := h.Lookup(ctx, uid)
	if d.Owner.Name != "vm" || d.SpecHash != "h1" {
		t.Fatalf("domain %+v lost its owner or spec hash", d)
	}

	steps := []struct {
		name   string
		do     func() error
		state  hypervisor.State
		reason hypervisor.Reason
	}{
		{"start paused", func() error { return h.Start(ctx, uid, true) }, hypervisor.StatePaused, hypervisor.ReasonStartingUp},
		{"resume", func() error { return h.Resume(ctx, uid) }, hypervisor.StateRunning, hypervisor.ReasonUnknown},
		{"suspend", func() error { return h.Suspend(ctx, uid) }, hypervisor.StatePaused, hypervisor.ReasonUser},
		{"resume again", func() error { return h.Resume(ctx, uid) }, hypervisor.StateRunning, hypervisor.ReasonUnknown},
		{"shutdown", func() error { return h.Shutdown(ctx, uid) }, hypervisor.StateShutoff, hypervisor.ReasonShutdown},
		{"start", func() error { return h.Start(ctx, uid, false) }, hypervisor.StateRunning, hypervisor.ReasonUnknown},
		{"destroy", func() error { return h.Destroy(ctx, uid) }, hypervisor.StateShutoff, hypervisor.ReasonDestroyed},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		nextEvent(t, h)
		if st, r := state(t, h); st != s.state || r != s.reason {
			t.Fatalf("after %s: %s/%q, want %s/%q", s.name, st, r, s.state, s.reason)
		}
	}
	// As with libvirt: resume of a domain that is not paused fails;
	// destroy and shutdown of a stopped one succeed.
	if err := h.Resume(ctx, uid); err == nil {
		t.Fatal("Resume of a shut off domain succeeded")
	}
	if err := h.Suspend(ctx, uid); err == nil {
		t.Fatal("Suspend of a shut off domain succeeded")
	}
	if err := h.Destroy(ctx, uid); err != nil {
		t.Fatalf("Destroy of a shut off domain: %v", err)
	}
	if err := h.Undefine(ctx, uid); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Lookup(ctx, uid); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("Lookup after Undefine = %v, want ErrNotFound", err)
	}
	if err := h.Undefine(ctx, uid); err != nil {
		t.Fatalf("Undefine of a missing domain: %v", err)
	}
}

// An undefined running domain lives on as a transient domain until it stops.
func TestUndefineRunningIsTransient(t *testing.T) {
	ctx := context.Background()
	h := New(Latencies{})
	defer h.Close()
	if err := h.Define(ctx, config()); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx, uid, false); err != nil {
		t.Fatal(err)
	}
	if err := h.Undefine(ctx, uid); err != nil {
		t.Fatal(err)
	}
	if s, _ := state(t, h); s != hypervisor.StateRunning {
		t.Fatalf("undefined running domain is %s, want Running", s)
	}
	if err := h.Destroy(ctx, uid); err != nil {
		t.Fatal(err)
	}
	if list, _ := h.List(ctx); len(list) != 0 {
		t.Fatalf("List after destroying a transient domain = %v, want none", list)
	}
}

// A guest takes GuestShutdown to answer ACPI, ShuttingDown meanwhile; a
// crash is reported as such.
func TestLatencies(t *testing.T) {
	ctx := context.Background()
	h := New(Latencies{Boot: 50 * time.Millisecond, GuestShutdown: 100 * time.Millisecond})
	defer h.Close()
	go func() {
		for range h.Events() {
		}
	}()
	if err := h.Define(ctx, config()); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := h.Start(ctx, uid, false); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 50*time.Millisecond {
		t.Fatalf("Start took %v, want at least the 50ms boot latency", d)
	}
	if err := h.Shutdown(ctx, uid); err != nil {
		t.Fatal(err)
	}
	if s, _ := state(t, h); s != hypervisor.StateShutdown {
		t.Fatalf("right after Shutdown: %s, want ShuttingDown", s)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, r := state(t, h)
		if s == hypervisor.StateShutoff {
			if r != hypervisor.ReasonShutdown {
				t.Fatalf("reason %q, want Shutdown", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %s 5s after Shutdown", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := h.Start(ctx, uid, false); err != nil {
		t.Fatal(err)
	}
	if err := h.Crash(uid); err != nil {
		t.Fatal(err)
	}
	if s, r := state(t, h); s != hypervisor.StateShutoff || r != hypervisor.ReasonCrashed {
		t.Fatalf("after Crash: %s/%q, want Shutoff/Crashed", s, r)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := h.Start(cctx, uid, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a cancelled context = %v, want context.Canceled", err)
	}
}
