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

package snapshot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// fakeAgent records freezes and thaws; thawFails makes that many thaws
// fail first.
type fakeAgent struct {
	hypervisor.GuestAgent
	freezeErr error
	thawFails int
	calls     []string
}

func (f *fakeAgent) FreezeFilesystems(ctx context.Context, uid string) (int, error) {
	f.calls = append(f.calls, "freeze")
	if f.freezeErr != nil {
		return 0, f.freezeErr
	}
	return 2, nil
}

func (f *fakeAgent) ThawFilesystems(ctx context.Context, uid string) (int, error) {
	f.calls = append(f.calls, "thaw")
	if f.thawFails > 0 {
		f.thawFails--
		return 0, errors.New("thaw failed")
	}
	return 2, nil
}

func TestFreezePlan(t *testing.T) {
	agent := &fakeAgent{}
	tests := []struct {
		name       string
		agent      hypervisor.GuestAgent
		state      hypervisor.State
		memory     bool
		wantFreeze bool
		wantReason string
	}{
		{"running guest, disk snapshot", agent, hypervisor.StateRunning, false, true, ""},
		{"memory snapshot", agent, hypervisor.StateRunning, true, false, "MemoryIncluded"},
		{"stopped guest", agent, hypervisor.StateShutoff, false, false, "GuestNotRunning"},
		{"paused guest", agent, hypervisor.StatePaused, false, false, "GuestPaused"},
		{"no guest agents on this hypervisor", nil, hypervisor.StateRunning, false, false, "AgentUnsupported"},
	}
	for _, tt := range tests {
		freeze, res := freezePlan(tt.agent, tt.state, tt.memory)
		if freeze != tt.wantFreeze || res.Reason != tt.wantReason {
			t.Errorf("%s: freezePlan = %v, %q; want %v, %q", tt.name, freeze, res.Reason, tt.wantFreeze, tt.wantReason)
		}
		if !freeze && (res.Status != metav1.ConditionFalse || !strings.HasPrefix(res.Message, "not frozen")) {
			t.Errorf("%s: not frozen but %+v", tt.name, res)
		}
	}
}

// TestWithFrozenFilesystemsAlwaysThaws: the snapshot runs between a freeze
// and a thaw, and the thaw happens when the snapshot fails or panics too.
func TestWithFrozenFilesystemsAlwaysThaws(t *testing.T) {
	t.Run("snapshot succeeds", func(t *testing.T) {
		a := &fakeAgent{}
		res, err := withFrozenFilesystems(t.Context(), a, "u1", func() error { a.calls = append(a.calls, "snapshot"); return nil })
		if err != nil || res.Status != metav1.ConditionTrue || res.Reason != "Frozen" || res.ThawErr != nil {
			t.Fatalf("= %+v, %v; want frozen", res, err)
		}
		if got := strings.Join(a.calls, ","); got != "freeze,snapshot,thaw" {
			t.Errorf("calls %s, want freeze,snapshot,thaw", got)
		}
	})
	t.Run("snapshot fails", func(t *testing.T) {
		a := &fakeAgent{}
		boom := errors.New("snapshot failed")
		_, err := withFrozenFilesystems(t.Context(), a, "u1", func() error { return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v, want the snapshot's", err)
		}
		if got := strings.Join(a.calls, ","); got != "freeze,thaw" {
			t.Errorf("calls %s, want freeze,thaw", got)
		}
	})
	t.Run("snapshot panics", func(t *testing.T) {
		a := &fakeAgent{}
		func() {
			defer func() { _ = recover() }()
			_, _ = withFrozenFilesystems(t.Context(), a, "u1", func() error { panic("boom") })
		}()
		if got := strings.Join(a.calls, ","); got != "freeze,thaw" {
			t.Errorf("calls %s, want freeze,thaw", got)
		}
	})
	t.Run("context cancelled during the snapshot", func(t *testing.T) {
		a := &fakeAgent{}
		ctx, cancel := context.WithCancel(t.Context())
		_, err := withFrozenFilesystems(ctx, a, "u1", func() error { cancel(); return ctx.Err() })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		if got := strings.Join(a.calls, ","); got != "freeze,thaw" {
			t.Errorf("calls %s, want freeze,thaw", got)
		}
	})
	t.Run("thaw retried", func(t *testing.T) {
		a := &fakeAgent{thawFails: 2}
		res, err := withFrozenFilesystems(t.Context(), a, "u1", func() error { return nil })
		if err != nil || res.ThawErr != nil {
			t.Fatalf("= %+v, %v; want thawed on the third try", res, err)
		}
		if got := strings.Join(a.calls, ","); got != "freeze,thaw,thaw,thaw" {
			t.Errorf("calls %s", got)
		}
	})
	t.Run("thaw keeps failing: said in the result", func(t *testing.T) {
		a := &fakeAgent{thawFails: thawTries}
		res, err := withFrozenFilesystems(t.Context(), a, "u1", func() error { return nil })
		if err != nil || res.ThawErr == nil || !strings.Contains(res.Message, "THAWING FAILED") {
			t.Fatalf("= %+v, %v; want a thaw error", res, err)
		}
	})
	t.Run("agent not connected: snapshot unfrozen", func(t *testing.T) {
		a := &fakeAgent{freezeErr: fmt.Errorf("%w: not responding", hypervisor.ErrAgentNotConnected)}
		took := false
		res, err := withFrozenFilesystems(t.Context(), a, "u1", func() error { took = true; return nil })
		if err != nil || !took || res.Status != metav1.ConditionFalse || res.Reason != "AgentNotConnected" {
			t.Fatalf("= %+v, %v (took %v); want an unfrozen snapshot saying why", res, err, took)
		}
	})
	t.Run("libvirtd gone: no snapshot", func(t *testing.T) {
		a := &fakeAgent{freezeErr: hypervisor.ErrDisconnected}
		took := false
		_, err := withFrozenFilesystems(t.Context(), a, "u1", func() error { took = true; return nil })
		if !errors.Is(err, hypervisor.ErrDisconnected) || took {
			t.Fatalf("err = %v, took %v; want ErrDisconnected and no snapshot", err, took)
		}
	})
}
