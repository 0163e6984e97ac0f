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
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// components are what the supervisor runs, in start order.
var components = []string{"etcd", "kube-apiserver", "kube-controller-manager", "vessel-apiserver", "vessel-agent"}

// system is one local system run by the real vessel-up, as `make up` runs
// it, from a state directory of its own.
type system struct {
	root, binDir, stateDir, kubeCache string
	hypervisorName                    string
	kube                              kubernetes.Interface
	vessel                            versioned.Interface
}

// newSystem checks the prerequisites (skipping without them unless
// VESSEL_E2E is set), builds the binaries under test from this tree, and
// picks a state directory and a hypervisor name unique to the run, so that
// nothing is shared with a user's `make up` system on the same libvirtd.
func newSystem(t *testing.T) *system {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("VESSEL_E2E") != "" {
			t.Fatalf("VESSEL_E2E is set but "+format, args...)
		}
		t.Skipf(format+" (set VESSEL_E2E=1 to make this a failure)", args...)
	}
	if testing.Short() {
		t.Skip("runs a whole local system and boots a guest; skipped in -short mode")
	}
	if _, err := os.Stat(hypervisor.DefaultSocket); err != nil {
		missing("libvirtd is not running: %v; run hack/install-libvirt.sh", err)
	}
	outBin, err := launcher.DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(outBin, name)); err != nil {
			missing("%s is not built: %v; run make deps", name, err)
		}
	}
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(framework.GuestDir, f)); err != nil {
			missing("the test guest is not installed: %v; run make deps", err)
		}
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		missing("kubectl is not on PATH: %v", err)
	}

	root, err := launcher.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	s := &system{root: root, hypervisorName: "e2e-selfheal-" + rand.String(6)}
	for _, dir := range []*string{&s.binDir, &s.stateDir, &s.kubeCache} {
		if *dir, err = os.MkdirTemp("", "vessel-selfheal-"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		os.RemoveAll(s.binDir)
		os.RemoveAll(s.kubeCache)
		if t.Failed() {
			t.Logf("state and logs kept in %s", s.stateDir)
		} else {
			os.RemoveAll(s.stateDir)
		}
	})
	// The binaries under test are built from this tree, never taken from
	// a possibly stale _output/bin; the upstream ones are linked.
	build := exec.Command("go", "build", "-o", s.binDir+"/", "./cmd/vessel-up", "./cmd/vessel-apiserver", "./cmd/vessel-agent", "./cmd/kubectl-vm")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if err := os.Symlink(filepath.Join(outBin, name), filepath.Join(s.binDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// vesselUp runs `vessel-up` with args as `make up` does (from the
// repository root) and returns what it printed on stdout and stderr.
func (s *system) vesselUp(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	// Not t.Context(): --down runs in a cleanup, after it is canceled.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args = append([]string{"--state-dir=" + s.stateDir}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, "vessel-up"), args...)
	cmd.Dir = s.root
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// up is `make up`: it must succeed, and leave every component running.
func (s *system) up(t *testing.T) string {
	t.Helper()
	begin := time.Now()
	stdout, stderr, err := s.vesselUp(t, "--hypervisor-name="+s.hypervisorName, "--bin-dir="+s.binDir)
	if err != nil {
		t.Fatalf("vessel-up: %v\n%s%s", err, stdout, stderr)
	}
	t.Logf("vessel-up returned after %v:\n%s", time.Since(begin).Round(time.Millisecond), indent(stderr))
	if st := s.status(t); !st.Healthy() {
		t.Fatalf("vessel-up returned, but not everything runs:\n%s", s.statusTable(t))
	}
	if s.kube == nil {
		cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig())
		if err != nil {
			t.Fatal(err)
		}
		cfg.Timeout = 10 * time.Second
		s.kube = kubernetes.NewForConfigOrDie(cfg)
		s.vessel = versioned.NewForConfigOrDie(cfg)
	}
	return stdout
}

func (s *system) kubeconfig() string { return filepath.Join(s.stateDir, "admin.kubeconfig") }

func (s *system) status(t *testing.T) *launcher.Status {
	t.Helper()
	st, err := launcher.ReadStatus(s.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// statusTable is what `vessel-up --status` prints.
func (s *system) statusTable(t *testing.T) string {
	t.Helper()
	stdout, stderr, _ := s.vesselUp(t, "--status")
	return stdout + stderr
}

// pids returns the PID of every component, and of the supervisor.
func (s *system) pids(t *testing.T) map[string]int {
	t.Helper()
	st := s.status(t)
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
		st := s.status(t)
		if c := st.Component(name); c != nil && c.State == launcher.StateRunning && c.PID != 0 && c.PID != old && alive(c.PID) {
			return *c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (killed pid %d) not back within %v:\n%s", name, old, timeout, s.statusTable(t))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kubectl runs the real kubectl as the admin.
func (s *system) kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append(args, "--kubeconfig", s.kubeconfig())...)
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+s.kubeCache)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// leftovers lists the live processes whose command line names the state
// directory: after --down there must be none.
func (s *system) leftovers() []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(cmdline, []byte(s.stateDir+"/")) {
			found = append(found, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	return found
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
