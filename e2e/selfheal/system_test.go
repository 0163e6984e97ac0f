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

package selfheal

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/launcher"
)

// system is one local system run by the real vessel-up (framework.System)
// with what the selfheal tests add to it.
type system struct {
	*framework.System
}

func newSystem(t *testing.T) *system {
	return &system{framework.NewSystem(t, "e2e-selfheal")}
}

// components are what the supervisor runs, in start order: the control
// plane, then each hypervisor's virtlogd, libvirtd and agent.
func (s *system) components(t *testing.T) []string {
	t.Helper()
	names := []string{"etcd", "kube-apiserver", "kube-controller-manager", "vessel-apiserver"}
	for _, hv := range s.Hypervisors(t) {
		names = append(names, launcher.VirtlogdComponent(hv.Name), launcher.LibvirtdComponent(hv.Name), launcher.AgentComponent(hv.Name))
	}
	return names
}

// pids returns the PID of every component, and of the supervisor.
func (s *system) pids(t *testing.T) map[string]int {
	t.Helper()
	st := s.Status(t)
	pids := map[string]int{"supervisor": st.Supervisor.PID}
	for _, c := range st.Components {
		pids[c.Name] = c.PID
	}
	return pids
}

// kill sends SIGKILL to the process, as the OOM killer would.
func kill(t *testing.T, name string, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("no pid for %s", name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %s (pid %d): %v", name, pid, err)
	}
}

// waitBack waits until name runs again, ready, in a process other than
// old, and returns its status.
func (s *system) waitBack(t *testing.T, name string, old int, timeout time.Duration) launcher.ComponentStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := s.Status(t)
		if c := st.Component(name); c != nil && c.State == launcher.StateRunning && c.PID != 0 && c.PID != old && alive(c.PID) {
			return *c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (killed pid %d) not back within %v:\n%s", name, old, timeout, s.StatusTable(t))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// qemuPID is the PID of the QEMU process running the domain with uid (a
// VM's domain UUID is its UID), or 0.
func qemuPID(uid string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(cmdline, []byte("qemu-system")) && bytes.Contains(cmdline, []byte("\x00-uuid\x00"+uid+"\x00")) {
			return pid
		}
	}
	return 0
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && len(cmdline) > 0
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
