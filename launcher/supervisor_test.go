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

package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The supervisor's components here are shells that print "started <pid>",
// which is what makes them ready, and run until killed; their command
// lines name the state directory, as every real component's does.

const (
	runForever = `echo started $$; while :; do sleep 0.1; done`
	failAtOnce = `echo broken; exit 3`
)

func shellComponent(l layout, name, script string, after ...string) *component {
	return &component{
		name:   name,
		binary: "/bin/sh",
		args:   []string{"-c", script, filepath.Join(l.root, name)},
		after:  after,
		ready: func(ctx context.Context, p *process) error {
			for !strings.Contains(tail(p.logFile, 5), fmt.Sprintf("started %d", p.pid)) {
				if !p.running() {
					return fmt.Errorf("%s exited: %s", p.name, p.exitReason)
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
			return nil
		},
	}
}

func testLayout(t *testing.T) layout {
	t.Helper()
	l, err := newLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.create(); err != nil {
		t.Fatal(err)
	}
	// Whatever a test leaves running goes with it.
	t.Cleanup(func() { _ = Down(l.root) })
	return l
}

// runSupervisor supervises comps until the test ends, keeping the status in
// the state directory as the real one does.
func runSupervisor(t *testing.T, l layout, comps ...*component) *supervisor {
	t.Helper()
	s := newSupervisor(l, comps, t.Logf)
	s.keepStatus()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return s
}

// waitStatus waits until the component's recorded status satisfies ok.
func waitStatus(t *testing.T, s *supervisor, name, what string, ok func(ComponentStatus) bool) ComponentStatus {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s.mu.Lock()
		c := *s.status.Component(name)
		s.mu.Unlock()
		if ok(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s within 15s; status: %+v", name, what, c)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isRunning(c ComponentStatus) bool { return c.State == StateRunning }

func TestSupervisorRestartsWhatExits(t *testing.T) {
	l := testLayout(t)
	s := runSupervisor(t, l, shellComponent(l, "store", runForever), shellComponent(l, "server", runForever, "store"))
	store := waitStatus(t, s, "store", "running", isRunning)
	server := waitStatus(t, s, "server", "running", isRunning)

	killedAt := time.Now()
	if err := syscall.Kill(store.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	back := waitStatus(t, s, "store", "running again with a new pid", func(c ComponentStatus) bool {
		return isRunning(c) && c.PID != store.PID
	})
	t.Logf("store back %v after SIGKILL", time.Since(killedAt).Round(time.Millisecond))
	if back.Restarts != 1 || back.LastExit == nil || back.LastExit.Reason != "signal: killed" {
		t.Errorf("after one SIGKILL: restarts %d, last exit %+v; want 1 restart after signal: killed", back.Restarts, back.LastExit)
	}
	if pid, ok := ownedPID(l.pidFile("store"), l.root); !ok || pid != back.PID {
		t.Errorf("PID file names %d (alive: %v), want the new pid %d", pid, ok, back.PID)
	}
	if got := waitStatus(t, s, "server", "running", isRunning); got.PID != server.PID || got.Restarts != 0 {
		t.Errorf("server was restarted along (pid %d -> %d, restarts %d); only what exits is", server.PID, got.PID, got.Restarts)
	}

	// What `vessel-up --status` reads agrees.
	st, err := ReadStatus(l.root)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Component("store"); c == nil || c.PID != back.PID || c.Restarts != 1 {
		t.Errorf("status file: store = %+v, want pid %d with 1 restart", c, back.PID)
	}
}

func TestSupervisorStartsNothingBeforeWhatItNeeds(t *testing.T) {
	l := testLayout(t)
	s := runSupervisor(t, l, shellComponent(l, "store", failAtOnce), shellComponent(l, "server", runForever, "store"))
	store := waitStatus(t, s, "store", "failing twice", func(c ComponentStatus) bool { return c.Failures >= 2 })
	if store.State != StateBackoff || store.LastExit == nil || store.LastExit.Reason != "exit status 3" {
		t.Errorf("store after failing: %+v; want backoff after exit status 3", store)
	}
	server := waitStatus(t, s, "server", "waiting", func(c ComponentStatus) bool { return c.State == StateWaiting })
	if server.PID != 0 || server.Message != "waiting for store" {
		t.Errorf("server = %+v, want no process, waiting for store", server)
	}
	if log, _ := os.ReadFile(l.logFile("store")); strings.Count(string(log), "broken") < 2 {
		t.Errorf("store's log does not keep both runs:\n%s", log)
	}
}

// A supervisor that was killed leaves its components running; the next one
// takes them over instead of starting second copies, and restarts them
// when they exit although it cannot wait for them.
func TestSupervisorAdoptsWhatRuns(t *testing.T) {
	l := testLayout(t)
	comp := shellComponent(l, "store", runForever)
	earlier, err := startProcess(l, comp.name, comp.binary, comp.args)
	if err != nil {
		t.Fatal(err)
	}
	s := runSupervisor(t, l, comp)
	adopted := waitStatus(t, s, "store", "running", isRunning)
	if adopted.PID != earlier.pid || !adopted.Adopted {
		t.Fatalf("store = %+v, want pid %d adopted", adopted, earlier.pid)
	}

	if err := syscall.Kill(earlier.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	back := waitStatus(t, s, "store", "running again with a new pid", func(c ComponentStatus) bool {
		return isRunning(c) && c.PID != earlier.pid
	})
	if back.Adopted || back.Restarts != 1 {
		t.Errorf("store after its adopted process died: %+v, want started by this supervisor, 1 restart", back)
	}
}

func TestOneSupervisorPerStateDirectory(t *testing.T) {
	l := testLayout(t)
	first, err := lockSupervisor(l)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockSupervisor(l); !errors.Is(err, ErrSupervisorRunning) {
		t.Errorf("second lock: err = %v, want ErrSupervisorRunning", err)
	}
	first.Close() // as when the supervisor dies
	second, err := lockSupervisor(l)
	if err != nil {
		t.Errorf("lock after the first holder went: %v", err)
	} else {
		second.Close()
	}
}

// Down must stop the supervisor before the components, or it would start
// them again.
func TestDownStopsTheSupervisorFirst(t *testing.T) {
	l := testLayout(t)
	order := filepath.Join(l.root, "order")
	noteTERM := func(name string) string {
		return fmt.Sprintf(`trap 'echo %s >> %s; exit 0' TERM; echo started $$; while :; do sleep 0.1; done`, name, order)
	}
	for _, name := range []string{"etcd", "kube-apiserver", supervisorName} {
		comp := shellComponent(l, name, noteTERM(name))
		p, err := startProcess(l, name, comp.binary, comp.args)
		if err != nil {
			t.Fatal(err)
		}
		if err := comp.ready(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := Down(l.root); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(order)
	if want := "supervisor\nkube-apiserver\netcd\n"; string(got) != want {
		t.Errorf("stopped in order %q, want %q", got, want)
	}
}

func TestReadStatusChecksWhatRuns(t *testing.T) {
	l := testLayout(t)
	s := runSupervisor(t, l, shellComponent(l, "etcd", runForever))
	etcd := waitStatus(t, s, "etcd", "running", isRunning)

	// The supervisor records its own PID; this test process stands in
	// for it, so mark one that ReadStatus takes for a live supervisor.
	sup, err := startProcess(l, supervisorName, "/bin/sh", []string{"-c", runForever, filepath.Join(l.root, supervisorName)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatus(l.root)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Supervisor.Running || !st.Healthy() {
		t.Errorf("with everything running: supervisor running %v, healthy %v; want both", st.Supervisor.Running, st.Healthy())
	}

	sup.stop()
	st, err = ReadStatus(l.root)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Component("etcd"); st.Supervisor.Running || st.Healthy() || c.State != StateRunning || c.PID != etcd.PID {
		t.Errorf("without a supervisor: supervisor running %v, healthy %v, etcd %+v; want etcd running unsupervised, not healthy", st.Supervisor.Running, st.Healthy(), c)
	}
}
