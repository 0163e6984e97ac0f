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

package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher"
	"github.com/vessel-vm/vessel/launcher/libvirtd"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// System is one local system run by the real vessel-up, as `make up` runs
// it (supervisor, hypervisors and all), from a state directory of its own,
// for the suites that test vessel-up itself. Unlike Env, it is per test.
type System struct {
	Root, BinDir, StateDir, KubeCache string
	// HypervisorPrefix is unique to the run: the hypervisors are
	// <prefix>-1, <prefix>-2, ...
	HypervisorPrefix string
	// Kube and Vessel are the admin's clients, set by the first Up.
	Kube   kubernetes.Interface
	Vessel versioned.Interface
}

// NewSystem checks the prerequisites (skipping without them unless
// VESSEL_E2E is set), builds the binaries under test from this tree, and
// picks a state directory and hypervisor names unique to the run. When the
// test ends, whatever the system still runs is destroyed (its hypervisors'
// namespaces too); its state and logs are kept if the test failed.
func NewSystem(t *testing.T, prefix string) *System {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("VESSEL_E2E") != "" {
			t.Fatalf("VESSEL_E2E is set but "+format, args...)
		}
		t.Skipf(format+" (set VESSEL_E2E=1 to make this a failure)", args...)
	}
	if testing.Short() {
		t.Skip("runs a whole local system and boots guests; skipped in -short mode")
	}
	if reason := MissingLibvirt(); reason != "" {
		missing("%s", reason)
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
		if _, err := os.Stat(filepath.Join(GuestDir, f)); err != nil {
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
	s := &System{Root: root, HypervisorPrefix: prefix + "-" + rand.String(5)}
	for _, dir := range []*string{&s.BinDir, &s.StateDir, &s.KubeCache} {
		// Short: the libvirtd sockets live under the state directory.
		if *dir, err = os.MkdirTemp("", "vessel-sys-"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := launcher.Destroy(s.StateDir); err != nil {
			t.Errorf("destroy what is left: %v", err)
		}
		os.RemoveAll(s.BinDir)
		os.RemoveAll(s.KubeCache)
		if t.Failed() {
			t.Logf("state and logs kept in %s", s.StateDir)
		} else {
			os.RemoveAll(s.StateDir)
		}
	})
	// The binaries under test are built from this tree, never taken from
	// a possibly stale _output/bin; the upstream ones are linked.
	build := exec.Command("go", "build", "-o", s.BinDir+"/", "./cmd/vessel-up", "./cmd/vessel-apiserver", "./cmd/vessel-agent", "./cmd/kubectl-vm", "./cmd/vessel-reaper")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if err := os.Symlink(filepath.Join(outBin, name), filepath.Join(s.BinDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// VesselUp runs `vessel-up` with args as `make up` does (from the
// repository root) and returns what it printed on stdout and stderr.
func (s *System) VesselUp(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	// Not t.Context(): --down runs in a cleanup, after it is canceled.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args = append([]string{"--state-dir=" + s.StateDir}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(s.BinDir, "vessel-up"), args...)
	cmd.Dir = s.Root
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// Up is `make up` with extra flags: it must succeed, and leave every
// component running.
func (s *System) Up(t *testing.T, args ...string) string {
	t.Helper()
	begin := time.Now()
	stdout, stderr, err := s.VesselUp(t, append([]string{"--hypervisor-prefix=" + s.HypervisorPrefix, "--bin-dir=" + s.BinDir}, args...)...)
	if err != nil {
		t.Fatalf("vessel-up: %v\n%s%s", err, stdout, stderr)
	}
	t.Logf("vessel-up returned after %v:\n%s", time.Since(begin).Round(time.Millisecond), indent(stderr))
	if st := s.Status(t); !st.Healthy() {
		t.Fatalf("vessel-up returned, but not everything runs:\n%s", s.StatusTable(t))
	}
	if s.Kube == nil {
		cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig())
		if err != nil {
			t.Fatal(err)
		}
		cfg.Timeout = 10 * time.Second
		s.Kube = kubernetes.NewForConfigOrDie(cfg)
		s.Vessel = versioned.NewForConfigOrDie(cfg)
	}
	return stdout
}

// Down is `make down`, after which no process of the system may run but
// the virtlogds of hypervisors whose guests keep running.
func (s *System) Down(t *testing.T) {
	t.Helper()
	stdout, stderr, err := s.VesselUp(t, "--down")
	if err != nil {
		t.Errorf("vessel-up --down: %v\n%s%s", err, stdout, stderr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for left := s.Leftovers(t); len(left) > 0; left = s.Leftovers(t) {
		if time.Now().After(deadline) {
			t.Errorf("still running after vessel-up --down:\n%s", strings.Join(left, "\n"))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Kubeconfig is the admin's.
func (s *System) Kubeconfig() string { return filepath.Join(s.StateDir, "admin.kubeconfig") }

// Status is what the supervisor records, checked against the live
// processes (launcher.ReadStatus).
func (s *System) Status(t *testing.T) *launcher.Status {
	t.Helper()
	st, err := launcher.ReadStatus(s.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// StatusTable is what `vessel-up --status` prints.
func (s *System) StatusTable(t *testing.T) string {
	t.Helper()
	stdout, stderr, _ := s.VesselUp(t, "--status")
	return stdout + stderr
}

// Hypervisors are the system's hypervisors.
func (s *System) Hypervisors(t *testing.T) []launcher.Hypervisor {
	t.Helper()
	hvs, err := launcher.Hypervisors(s.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	return hvs
}

// Hypervisor returns the named hypervisor of the system.
func (s *System) Hypervisor(t *testing.T, name string) launcher.Hypervisor {
	t.Helper()
	for _, hv := range s.Hypervisors(t) {
		if hv.Name == name {
			return hv
		}
	}
	t.Fatalf("the system runs no hypervisor %q", name)
	return launcher.Hypervisor{}
}

// Kubectl runs the real kubectl as the admin.
func (s *System) Kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// Flags go last: kubectl refuses flags before a plugin's name.
	cmd := exec.CommandContext(ctx, "kubectl", append(args, "--kubeconfig", s.Kubeconfig())...)
	cmd.Env = append(os.Environ(),
		"PATH="+s.BinDir+string(os.PathListSeparator)+os.Getenv("PATH"), // kubectl vm
		"KUBECACHEDIR="+s.KubeCache,
	)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Leftovers lists the live processes whose command line names the state
// directory, but for virtlogds that stay with their hypervisors' guests
// and those guests' QEMU processes.
func (s *System) Leftovers(t *testing.T) []string {
	t.Helper()
	kept := map[int]bool{}
	for _, hv := range s.Hypervisors(t) {
		if qemus, _ := hv.LibvirtHost().QEMUPIDs(); len(qemus) > 0 {
			pids, _ := libvirtd.PIDsInNetns(hv.Netns)
			for _, pid := range pids {
				kept[pid] = true
			}
		}
	}
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || kept[pid] {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(cmdline, []byte(s.StateDir+"/")) {
			found = append(found, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	return found
}

// RunningGuest creates the test guest as namespace/name (with nodeSelector
// nodeSelector when not empty) and waits until it has booted.
func (s *System) RunningGuest(t *testing.T, namespace, name string, nodeSelector map[string]string) *v1alpha1.VirtualMachine {
	t.Helper()
	vm := GuestVM(namespace, name)
	vm.Spec.NodeSelector = nodeSelector
	if _, err := s.Vessel.VesselV1alpha1().VirtualMachines(namespace).Create(t.Context(), vm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create VM: %v", err)
	}
	vm = s.WaitPhase(t, namespace, name, v1alpha1.VirtualMachineRunning)
	consoleLog := filepath.Join(VMDir(s.Hypervisor(t, vm.Status.NodeName), vm), "console.log")
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		log, _ := os.ReadFile(consoleLog)
		return strings.Contains(string(log), "VESSEL-BOOT done"), nil
	})
	if err != nil {
		log, _ := os.ReadFile(consoleLog)
		t.Fatalf("the guest did not boot: %v; console:\n%s", err, log)
	}
	return vm
}

// WaitPhase waits until the VM is in phase.
func (s *System) WaitPhase(t *testing.T, namespace, name string, phase v1alpha1.VirtualMachinePhase) *v1alpha1.VirtualMachine {
	t.Helper()
	var vm *v1alpha1.VirtualMachine
	var lastErr error
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		vm, lastErr = s.Vessel.VesselV1alpha1().VirtualMachines(namespace).Get(ctx, name, metav1.GetOptions{})
		return lastErr == nil && vm.Status.Phase == phase, nil
	})
	if err != nil {
		t.Fatalf("VM %s/%s not %s: %v (last error %v, status %+v)", namespace, name, phase, err, lastErr, vm)
	}
	return vm
}

// DeleteGuest deletes the VM and waits until its agent has released it;
// then no hypervisor may have its domain.
func (s *System) DeleteGuest(t *testing.T, vm *v1alpha1.VirtualMachine) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vms := s.Vessel.VesselV1alpha1().VirtualMachines(vm.Namespace)
	err := vms.Delete(ctx, vm.Name, metav1.DeleteOptions{})
	if err == nil || apierrors.IsNotFound(err) {
		err = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			_, err := vms.Get(ctx, vm.Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
	}
	if err != nil {
		t.Errorf("delete VM %s/%s: %v", vm.Namespace, vm.Name, err)
	}
	for _, hv := range s.Hypervisors(t) {
		if found, err := hasDomain(ctx, hv, string(vm.UID)); err != nil || found {
			t.Errorf("the guest's domain %s on %s after its VM was deleted: found %v (%v)", vm.UID, hv.Name, found, err)
		}
	}
}

func hasDomain(ctx context.Context, hv launcher.Hypervisor, uid string) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lv := hypervisor.NewLibvirt(hv.Socket())
	go lv.Run(ctx)
	if err := lv.WaitConnected(ctx); err != nil {
		return false, fmt.Errorf("connect to the libvirtd of %s: %w", hv.Name, err)
	}
	_, err := lv.Lookup(ctx, uid)
	if errors.Is(err, hypervisor.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
