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

package console

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/cluster"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// guestDir is where `make deps` installs the test guest, under the
// allowed hostPath root.
var guestDir = filepath.Join(cluster.ImagesDir, "vessel-guest")

// env is one control plane with an agent for the whole package: starting
// it costs seconds, booting guests more.
type env struct {
	c        *cluster.Cluster
	binDir   string // freshly built kubectl-vm, vessel-apiserver, vessel-agent
	admin    versioned.Interface
	stateDir string

	mu      sync.Mutex
	created []*v1alpha1.VirtualMachine
}

var (
	shared     *env
	sharedErr  error
	sharedOnce sync.Once
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.teardown()
	}
	os.Exit(code)
}

// teardown deletes the VMs the tests created and waits until the agent
// has removed their domains, stops the control plane, and removes any
// domain still left, so no guest outlives the run.
func (e *env) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e.mu.Lock()
	created := e.created
	e.mu.Unlock()
	for _, vm := range created {
		_ = e.admin.VesselV1alpha1().VirtualMachines(vm.Namespace).Delete(ctx, vm.Name, metav1.DeleteOptions{})
	}
	for _, vm := range created {
		_ = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			_, err := e.admin.VesselV1alpha1().VirtualMachines(vm.Namespace).Get(ctx, vm.Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
	}
	e.c.Stop()
	lv := hypervisor.NewLibvirt("")
	go lv.Run(ctx)
	if lv.WaitConnected(ctx) == nil {
		for _, vm := range created {
			_ = lv.Destroy(ctx, string(vm.UID))
			_ = lv.Undefine(ctx, string(vm.UID))
		}
	}
	os.RemoveAll(e.stateDir)
	os.RemoveAll(e.binDir)
}

// requireEnv skips without libvirtd or kube-apiserver, unless VESSEL_E2E=1
// says they must be there, and starts the shared control plane once.
func requireEnv(tb testing.TB) *env {
	tb.Helper()
	skip := func(format string, args ...any) {
		tb.Helper()
		if os.Getenv("VESSEL_E2E") != "" {
			tb.Fatalf("VESSEL_E2E is set but "+format, args...)
		}
		tb.Skipf(format+" (set VESSEL_E2E=1 to make this a failure)", args...)
	}
	if _, err := os.Stat(hypervisor.DefaultSocket); err != nil {
		skip("libvirtd is not running: %v; run hack/install-libvirt.sh", err)
	}
	bin, err := cluster.DefaultBinDir()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range []string{"kube-apiserver", "kube-controller-manager", "etcd"} {
		if _, err := os.Stat(filepath.Join(bin, f)); err != nil {
			skip("%s is not built: %v; run make deps", f, err)
		}
	}
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(guestDir, f)); err != nil {
			skip("the test guest is not installed: %v; run make deps", err)
		}
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		skip("kubectl is not on PATH: %v", err)
	}
	if testing.Short() {
		tb.Skip("starts a control plane and boots guests; skipped in -short mode")
	}
	sharedOnce.Do(func() { shared, sharedErr = startEnv(tb) })
	if sharedErr != nil {
		tb.Fatal(sharedErr)
	}
	return shared
}

func startEnv(tb testing.TB) (*env, error) {
	root, err := cluster.RepoRoot()
	if err != nil {
		return nil, err
	}
	binDir, err := os.MkdirTemp("", "vessel-console-bin-")
	if err != nil {
		return nil, err
	}
	// The binaries under test are built from this tree, not taken from a
	// possibly stale _output/bin.
	begin := time.Now()
	build := exec.Command("go", "build", "-o", binDir+"/", "./cmd/kubectl-vm", "./cmd/vessel-apiserver", "./cmd/vessel-agent")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build: %v\n%s", err, out)
	}
	tb.Logf("built kubectl-vm, vessel-apiserver, vessel-agent in %v", time.Since(begin).Round(time.Millisecond))
	stateDir, err := os.MkdirTemp("", "vessel-console-e2e-")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{
		StateDir: stateDir,
		// A name of its own, so this agent and those of control planes
		// running next to it on the same libvirtd leave each other's
		// domains alone.
		HypervisorName:        "console-e2e-" + utilrand.String(5),
		VesselAPIServerBinary: filepath.Join(binDir, "vessel-apiserver"),
		AgentBinary:           filepath.Join(binDir, "vessel-agent"),
		Logf:                  tb.Logf,
	})
	if err != nil {
		return nil, err
	}
	cfg, err := c.AdminConfig()
	if err != nil {
		c.Stop()
		return nil, err
	}
	admin, err := versioned.NewForConfig(cfg)
	if err != nil {
		c.Stop()
		return nil, err
	}
	return &env{c: c, binDir: binDir, admin: admin, stateDir: stateDir}, nil
}

// guestVM is a VM booting the test guest from the host's image directory.
func guestVM(namespace, name string) *v1alpha1.VirtualMachine {
	grace := int64(5)
	return &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: v1alpha1.VirtualMachineSpec{
			RunStrategy: v1alpha1.RunStrategyAlways,
			CPUs:        1,
			Memory:      resource.MustParse("128Mi"),
			Kernel: &v1alpha1.KernelBoot{
				Kernel:  v1alpha1.FileSource{HostPath: &v1alpha1.HostPathSource{Path: filepath.Join(guestDir, "vmlinuz")}},
				Initrd:  &v1alpha1.FileSource{HostPath: &v1alpha1.HostPathSource{Path: filepath.Join(guestDir, "initrd.img")}},
				Cmdline: "console=ttyS0 quiet",
			},
			TerminationGracePeriodSeconds: &grace,
		},
	}
}

// runningVM creates a VM (as the admin) and waits until it runs and its
// guest has printed its boot-done marker.
func (e *env) runningVM(tb testing.TB, namespace, name string) *v1alpha1.VirtualMachine {
	tb.Helper()
	ctx := context.Background()
	vms := e.admin.VesselV1alpha1().VirtualMachines(namespace)
	if _, err := vms.Get(ctx, name, metav1.GetOptions{}); err != nil {
		vm, err := vms.Create(ctx, guestVM(namespace, name), metav1.CreateOptions{})
		if err != nil {
			tb.Fatalf("create VM %s/%s: %v", namespace, name, err)
		}
		e.mu.Lock()
		e.created = append(e.created, vm)
		e.mu.Unlock()
	}
	var last *v1alpha1.VirtualMachine
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		vm, err := vms.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = vm
		return last.Status.Phase == v1alpha1.VirtualMachineRunning, nil
	})
	if err != nil {
		tb.Fatalf("VM %s/%s did not run within 2m; last: %+v", namespace, name, last)
	}
	e.waitLog(tb, last, "VESSEL-BOOT done")
	return last
}

// consoleLog is the VM's virtlogd console log under the agent's state.
func (e *env) consoleLog(vm *v1alpha1.VirtualMachine) string {
	b, _ := os.ReadFile(filepath.Join(e.stateDir, "agent", "vms", string(vm.UID), "console.log"))
	return string(b)
}

func (e *env) waitLog(tb testing.TB, vm *v1alpha1.VirtualMachine, marker string) {
	tb.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		return containsAll(e.consoleLog(vm), marker), nil
	})
	if err != nil {
		tb.Fatalf("VM %s/%s: console log lacks %q; log:\n%s", vm.Namespace, vm.Name, marker, tail(e.consoleLog(vm), 2000))
	}
}
