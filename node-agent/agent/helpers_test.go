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

package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"k8s.io/klog/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/node-agent/agent"
	"github.com/vessel-vm/vessel/node-agent/disks"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

const testNamespace = "default"

// requireLibvirt skips the test without libvirtd, unless VESSEL_E2E=1 says
// the environment must have it.
func requireLibvirt(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(hypervisor.DefaultSocket); err != nil {
		if os.Getenv("VESSEL_E2E") != "" {
			t.Fatalf("VESSEL_E2E is set but libvirtd is not running (%v): run hack/install-libvirt.sh", err)
		}
		t.Skipf("libvirtd not running (%v): run hack/install-libvirt.sh, or set VESSEL_E2E=1 to make this a failure", err)
	}
	if testing.Short() {
		t.Skip("boots real guests; skipped in -short mode")
	}
}

// guestDir is where hack/build-guest.sh put the test guest.
func guestDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../_output/guest")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vmlinuz", "initrd.img", "disk.img"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			msg := fmt.Sprintf("test guest missing (%v): run hack/build-guest.sh", err)
			if os.Getenv("VESSEL_E2E") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return dir
}

// image is a file served by the test's image server.
type image struct {
	URL    string
	SHA256 string
}

func (i image) source() *v1alpha1.ImageSource {
	return &v1alpha1.ImageSource{URL: i.URL, SHA256: i.SHA256}
}

// env is a vessel-apiserver, libvirt, an image server and (when started)
// an agent, for one test.
type env struct {
	t        *testing.T
	ctx      context.Context
	client   versioned.Interface
	lv       *hypervisor.Libvirt
	hvName   string
	stateDir string
	images   map[string]image

	mu          sync.Mutex
	agentCancel context.CancelFunc
	agentDone   chan error
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvOn(t, "")
}

// newEnvOn is newEnv with the agent's libvirt connection on socket.
func newEnvOn(t *testing.T, socket string) *env {
	t.Helper()
	requireLibvirt(t)
	gd := guestDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	server := apiservertesting.Start(t, apiservertesting.Options{})
	lv := hypervisor.NewLibvirt(socket)
	go lv.Run(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := lv.WaitConnected(wctx); err != nil {
		t.Fatalf("connect to libvirtd: %v", err)
	}

	e := &env{
		t: t, ctx: ctx, client: server.Client, lv: lv,
		hvName: "test-" + rand.String(6),
		images: map[string]image{},
	}
	// QEMU (running as root) needs to read the state dir; t.TempDir is fine.
	e.stateDir = t.TempDir()

	srv := httptest.NewServer(http.FileServer(http.Dir(gd)))
	t.Cleanup(srv.Close)
	for _, f := range []string{"vmlinuz", "initrd.img", "disk.img"} {
		b, err := os.ReadFile(filepath.Join(gd, f))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		e.images[f] = image{URL: srv.URL + "/" + f, SHA256: hex.EncodeToString(sum[:])}
	}
	// Registered after cancel: runs before it, while libvirt is connected.
	t.Cleanup(e.destroyDomains)
	return e
}

// destroyDomains removes every domain this test's agent owns, pass or fail.
func (e *env) destroyDomains() {
	e.stopAgent()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	doms, err := e.lv.List(ctx)
	if err != nil {
		e.t.Logf("cleanup: list domains: %v", err)
		return
	}
	for _, d := range doms {
		if d.Owner.Hypervisor != e.hvName {
			continue
		}
		if err := e.lv.Destroy(ctx, d.UUID); err != nil {
			e.t.Logf("cleanup: destroy %s: %v", d.Name, err)
		}
		if err := e.lv.Undefine(ctx, d.UUID); err != nil {
			e.t.Logf("cleanup: undefine %s: %v", d.Name, err)
		}
	}
}

// startAgent runs an agent until stopAgent or the end of the test.
func (e *env) startAgent() {
	e.t.Helper()
	a, err := agent.New(agent.Config{
		Client:         e.client,
		Hypervisor:     e.lv,
		HypervisorName: e.hvName,
		Labels:         map[string]string{"vessel.dev/test": "true"},
		StateDir:       e.stateDir,
		// The test's image server listens on loopback.
		Images:            disks.CacheConfig{Egress: disks.Egress{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}},
		HeartbeatInterval: 2 * time.Second,
		ResyncPeriod:      5 * time.Second,
		ACPIInterval:      2 * time.Second,
		Workers:           4,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	e.mu.Lock()
	e.agentCancel, e.agentDone = cancel, done
	e.mu.Unlock()
}

// stopAgent stops the agent the way a crash would look to the guests:
// nothing is shut down, domains keep running.
func (e *env) stopAgent() {
	e.mu.Lock()
	cancel, done := e.agentCancel, e.agentDone
	e.agentCancel, e.agentDone = nil, nil
	e.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			e.t.Logf("agent exited: %v", err)
		}
	case <-time.After(30 * time.Second):
		e.t.Errorf("agent did not stop within 30s")
	}
}

// guestVM is a VM booting the test guest from URL images, with a data disk
// overlay and, when userData is set, a cloud-init seed.
func (e *env) guestVM(name string, strategy v1alpha1.RunStrategy, userData string) *v1alpha1.VirtualMachine {
	grace := int64(10)
	vm := &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace},
		Spec: v1alpha1.VirtualMachineSpec{
			RunStrategy: strategy,
			CPUs:        1,
			Memory:      resource.MustParse("96Mi"),
			Kernel: &v1alpha1.KernelBoot{
				Kernel:  v1alpha1.FileSource{Image: e.images["vmlinuz"].source()},
				Initrd:  &v1alpha1.FileSource{Image: e.images["initrd.img"].source()},
				Cmdline: "console=ttyS0 quiet",
			},
			Disks:                         []v1alpha1.Disk{{Name: "data", Image: e.images["disk.img"].source()}},
			TerminationGracePeriodSeconds: &grace,
		},
	}
	if userData != "" {
		vm.Spec.Disks = append(vm.Spec.Disks, v1alpha1.Disk{Name: "seed", CloudInit: &v1alpha1.CloudInitSource{UserData: userData}})
	}
	return vm
}

// create creates vm and binds it to the test's hypervisor.
func (e *env) create(vm *v1alpha1.VirtualMachine) *v1alpha1.VirtualMachine {
	e.t.Helper()
	vms := e.client.VesselV1alpha1().VirtualMachines(vm.Namespace)
	created, err := vms.Create(e.ctx, vm, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatalf("create VM %s: %v", vm.Name, err)
	}
	bound, err := vms.Bind(e.ctx, vm.Name, &v1alpha1.VirtualMachineBinding{
		ObjectMeta: metav1.ObjectMeta{Name: vm.Name}, Target: e.hvName,
	}, metav1.CreateOptions{})
	if apierrors.IsConflict(err) {
		// A scheduler in the server may have bound it first; to us is fine.
		bound, err = vms.Get(e.ctx, vm.Name, metav1.GetOptions{})
		if err == nil && bound.Spec.NodeName != e.hvName {
			e.t.Fatalf("VM %s was bound to %q, not to the test's hypervisor", vm.Name, bound.Spec.NodeName)
		}
	}
	if err != nil {
		e.t.Fatalf("bind VM %s: %v", vm.Name, err)
	}
	_ = created
	return bound
}

func (e *env) get(name string) *v1alpha1.VirtualMachine {
	e.t.Helper()
	vm, err := e.client.VesselV1alpha1().VirtualMachines(testNamespace).Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatalf("get VM %s: %v", name, err)
	}
	return vm
}

// waitVM waits until cond holds for the VM and returns it.
func (e *env) waitVM(name, what string, timeout time.Duration, cond func(*v1alpha1.VirtualMachine) bool) *v1alpha1.VirtualMachine {
	e.t.Helper()
	var last *v1alpha1.VirtualMachine
	start := time.Now()
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		vm, err := e.client.VesselV1alpha1().VirtualMachines(testNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = vm
		return cond(vm), nil
	})
	if err != nil {
		e.t.Fatalf("VM %s: %s not reached within %s; last status: %s", name, what, timeout, describe(last))
	}
	e.t.Logf("VM %s: %s after %.1fs", name, what, time.Since(start).Seconds())
	return last
}

func (e *env) waitPhase(name string, phase v1alpha1.VirtualMachinePhase, timeout time.Duration) *v1alpha1.VirtualMachine {
	e.t.Helper()
	return e.waitVM(name, "phase "+string(phase), timeout, func(vm *v1alpha1.VirtualMachine) bool {
		return vm.Status.Phase == phase
	})
}

func describe(vm *v1alpha1.VirtualMachine) string {
	if vm == nil {
		return "<none>"
	}
	var conds []string
	for _, c := range vm.Status.Conditions {
		conds = append(conds, fmt.Sprintf("%s=%s(%s: %s)", c.Type, c.Status, c.Reason, c.Message))
	}
	return fmt.Sprintf("phase=%s stopReason=%s observedAction=%d disks=%+v ifaces=%+v conditions=[%s]",
		vm.Status.Phase, vm.Status.StopReason, vm.Status.ObservedPowerActionID, vm.Status.Disks, vm.Status.Interfaces, strings.Join(conds, "; "))
}

// domain is the VM's libvirt domain, or nil.
func (e *env) domain(vm *v1alpha1.VirtualMachine) *hypervisor.Domain {
	e.t.Helper()
	d, err := e.lv.Lookup(e.ctx, string(vm.UID))
	if errors.Is(err, hypervisor.ErrNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatalf("look up domain of %s: %v", vm.Name, err)
	}
	return d
}

// qemuPID is the QEMU process of a running VM, from libvirt's pid file.
func (e *env) qemuPID(vm *v1alpha1.VirtualMachine) int {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join("/run/libvirt/qemu", hypervisor.DomainName(vm.Namespace, vm.Name)+".pid"))
	if err != nil {
		e.t.Fatalf("QEMU pid of %s: %v", vm.Name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		e.t.Fatalf("QEMU pid of %s: %v", vm.Name, err)
	}
	return pid
}

func (e *env) consolePath(vm *v1alpha1.VirtualMachine) string {
	return filepath.Join(e.stateDir, "vms", string(vm.UID), "console.log")
}

// waitConsole waits until the VM's console log contains every marker.
func (e *env) waitConsole(vm *v1alpha1.VirtualMachine, timeout time.Duration, markers ...string) {
	e.t.Helper()
	var text string
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		b, _ := os.ReadFile(e.consolePath(vm))
		text = strings.ReplaceAll(string(b), "\r", "")
		for _, m := range markers {
			if !strings.Contains(text, m) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		e.t.Fatalf("VM %s: console lacks %q after %s; console:\n%s", vm.Name, markers, timeout, tail(text, 2000))
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

func condition(vm *v1alpha1.VirtualMachine, typ string) *metav1.Condition {
	for i := range vm.Status.Conditions {
		if vm.Status.Conditions[i].Type == typ {
			return &vm.Status.Conditions[i]
		}
	}
	return nil
}

func TestMain(m *testing.M) {
	// VESSEL_TEST_V=2 shows the agent's decisions.
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	if v := os.Getenv("VESSEL_TEST_V"); v != "" {
		_ = fs.Set("v", v)
	}
	os.Exit(m.Run())
}
