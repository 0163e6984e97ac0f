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

// Package framework is what the end-to-end suites share: one real control
// plane (etcd, kube-apiserver, kube-controller-manager, vessel-apiserver
// behind its APIService) per test package with two hypervisors by default,
// each a node agent on a libvirtd of its own in its own namespaces (as
// `make up` runs them; the suites never touch the machine's libvirtd), the
// test guest, and helpers that drive them as a user would.
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
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// GuestDir is where `make deps` installs the test guest, under the allowed
// hostPath root; $VESSEL_GUEST_DIR, when set, names another one there (a
// guest built from this tree next to the installed one).
var GuestDir = guestDir()

func guestDir() string {
	if d := os.Getenv("VESSEL_GUEST_DIR"); d != "" {
		return d
	}
	return filepath.Join(launcher.ImagesDir, "vessel-guest")
}

// Env is one control plane with its hypervisors.
type Env struct {
	Cluster  *launcher.Cluster
	BinDir   string // kubectl-vm, vessel-apiserver, vessel-agent built from this tree
	Admin    versioned.Interface
	StateDir string
	// Hypervisors are the control plane's hypervisors, each with its own
	// libvirtd (Hypervisor.Socket, Hypervisor.URI) and agent state
	// (Hypervisor.AgentStateDir).
	Hypervisors []launcher.Hypervisor
	kubeDir     string

	libvirtMu sync.Mutex
	libvirts  map[string]*libvirtConn // by hypervisor
}

type libvirtConn struct {
	lv   *hypervisor.Libvirt
	stop context.CancelFunc
}

var (
	shared     *Env
	sharedErr  error
	sharedOnce sync.Once
)

// Main runs a package's tests and stops the shared control plane after
// them, then runs cleanups (for what the package set up before its tests).
// Call it from TestMain.
func Main(m *testing.M, cleanups ...func()) {
	code := m.Run()
	if shared != nil {
		shared.deleteAllVMs()
		shared.closeLibvirts()
		shared.Cluster.Stop()
		// Whatever the agents did not get to runs in the hypervisors'
		// namespaces, which go now, with it.
		if err := launcher.Destroy(shared.StateDir); err != nil {
			fmt.Fprintf(os.Stderr, "framework: %v\n", err)
			code = 1
		}
		keepLogs(filepath.Join(shared.StateDir, "logs"))
		os.RemoveAll(shared.StateDir)
		os.RemoveAll(shared.BinDir)
		os.RemoveAll(shared.kubeDir)
	}
	for _, c := range cleanups {
		c()
	}
	os.Exit(code)
}

// keepLogs copies the components' logs to $VESSEL_E2E_LOGS/<suite>-<pid>,
// if it is set, before the state directory goes.
func keepLogs(dir string) {
	to := os.Getenv("VESSEL_E2E_LOGS")
	if to == "" {
		return
	}
	to = filepath.Join(to, fmt.Sprintf("%s-%d", filepath.Base(os.Args[0]), os.Getpid()))
	if err := os.CopyFS(to, os.DirFS(dir)); err != nil {
		fmt.Fprintf(os.Stderr, "framework: keep the logs: %v\n", err)
		return
	}
	fmt.Fprintf(os.Stderr, "framework: the components' logs are in %s\n", to)
}

// Config adds flags to the control plane of a package's suite.
type Config struct {
	// VesselAPIServerArgs and AgentArgs are appended to the
	// vessel-apiserver's and the agents' command lines.
	VesselAPIServerArgs []string
	AgentArgs           []string
	// Hypervisors is how many hypervisors run; 0: DefaultHypervisors.
	Hypervisors int
	// AgentServingCertsFromCSR: agents get their serving certificates
	// through the CSR API (launcher.Options.AgentServingCertsFromCSR).
	AgentServingCertsFromCSR bool
}

// DefaultHypervisors is how many hypervisors a suite's control plane runs
// unless its Config says otherwise: as many as `make up` runs.
const DefaultHypervisors = 2

// Require returns the package's control plane, starting it on first use.
// It skips without libvirtd, the built binaries or the guest, unless
// VESSEL_E2E=1 says they must be there.
func Require(tb testing.TB) *Env {
	tb.Helper()
	return RequireWith(tb, Config{})
}

// RequireWith is Require with extra flags. The control plane is shared by
// the package's tests: the first call starts it, so a package passes the
// same Config every time.
func RequireWith(tb testing.TB, cfg Config) *Env {
	tb.Helper()
	skip := func(format string, args ...any) {
		tb.Helper()
		if os.Getenv("VESSEL_E2E") != "" {
			tb.Fatalf("VESSEL_E2E is set but "+format, args...)
		}
		tb.Skipf(format+" (set VESSEL_E2E=1 to make this a failure)", args...)
	}
	if reason := MissingLibvirt(); reason != "" {
		skip("%s", reason)
	}
	bin, err := launcher.DefaultBinDir()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range []string{"kube-apiserver", "kube-controller-manager", "etcd"} {
		if _, err := os.Stat(filepath.Join(bin, f)); err != nil {
			skip("%s is not built: %v; run make deps", f, err)
		}
	}
	for _, f := range []string{"vmlinuz", "initrd.img", "disk.img"} {
		if _, err := os.Stat(filepath.Join(GuestDir, f)); err != nil {
			skip("the test guest is not installed: %v; run make deps", err)
		}
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		skip("kubectl is not on PATH: %v", err)
	}
	if testing.Short() {
		tb.Skip("starts a control plane and boots guests; skipped in -short mode")
	}
	sharedOnce.Do(func() { shared, sharedErr = start(tb, cfg) })
	if sharedErr != nil {
		tb.Fatal(sharedErr)
	}
	return shared
}

func start(tb testing.TB, cfg Config) (_ *Env, err error) {
	root, err := launcher.RepoRoot()
	if err != nil {
		return nil, err
	}
	// Main cleans up after a suite that started; one that did not start
	// leaves nothing behind either (its components' logs are in the error,
	// and with VESSEL_E2E_LOGS).
	var made []string
	defer func() {
		if err == nil {
			return
		}
		if len(made) > 1 {
			keepLogs(filepath.Join(made[1], "logs"))
		}
		for _, dir := range made {
			os.RemoveAll(dir)
		}
	}()
	binDir, err := os.MkdirTemp("", "vessel-e2e-bin-")
	if err != nil {
		return nil, err
	}
	made = append(made, binDir)
	// The binaries under test are built from this tree, never taken from a
	// possibly stale _output/bin.
	build := exec.Command("go", "build", "-o", binDir+"/", "./cmd/kubectl-vm", "./cmd/vessel-apiserver", "./cmd/vessel-agent", "./cmd/vessel-reaper")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build: %v\n%s", err, out)
	}
	stateDir, err := os.MkdirTemp("", "vessel-e2e-state-")
	if err != nil {
		return nil, err
	}
	made = append(made, stateDir)
	kubeDir, err := os.MkdirTemp("", "vessel-e2e-kubecache-")
	if err != nil {
		return nil, err
	}
	made = append(made, kubeDir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := launcher.Start(ctx, launcher.Options{
		StateDir:              stateDir,
		VesselAPIServerBinary: filepath.Join(binDir, "vessel-apiserver"),
		AgentBinary:           filepath.Join(binDir, "vessel-agent"),
		ReaperBinary:          filepath.Join(binDir, "vessel-reaper"),
		Hypervisors:           HypervisorNames("e2e", cfg.Hypervisors),
		VesselAPIServerArgs:   cfg.VesselAPIServerArgs,
		// VESSEL_E2E_AGENT_ARGS (space-separated) goes on every agent's
		// command line too, for example -v=2 to see where a clone's time goes.
		AgentArgs:                append(append([]string{}, cfg.AgentArgs...), strings.Fields(os.Getenv("VESSEL_E2E_AGENT_ARGS"))...),
		AgentServingCertsFromCSR: cfg.AgentServingCertsFromCSR,
		Logf:                     tb.Logf,
	})
	if err != nil {
		if derr := launcher.Destroy(stateDir); derr != nil {
			tb.Logf("remove what started: %v", derr)
		}
		return nil, err
	}
	restCfg, err := c.AdminConfig()
	if err == nil {
		// client-go's default limit (5 requests/s) would make a test's
		// request wait behind its own polls, and a benchmark count that.
		restCfg.QPS, restCfg.Burst = 100, 200
		var admin versioned.Interface
		if admin, err = versioned.NewForConfig(restCfg); err == nil {
			return &Env{Cluster: c, BinDir: binDir, Admin: admin, StateDir: stateDir, Hypervisors: c.Hypervisors(), kubeDir: kubeDir}, nil
		}
	}
	c.Stop()
	_ = launcher.Destroy(stateDir)
	return nil, err
}

// HypervisorNames are n hypervisor names unique to this run, <prefix>-<random>-1
// ... (n 0: DefaultHypervisors): Hypervisors are cluster-wide, and names
// that differ make the logs of concurrent suites easy to tell apart.
func HypervisorNames(prefix string, n int) []string {
	if n == 0 {
		n = DefaultHypervisors
	}
	id := rand.String(5)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%s-%d", prefix, id, i+1)
	}
	return names
}

// MissingLibvirt says what is missing to run private libvirtds (see
// launcher/libvirtd), or "" when nothing is: root, libvirt and QEMU
// (hack/install-libvirt.sh), and the namespace tools.
func MissingLibvirt() string {
	if os.Geteuid() != 0 {
		return "the hypervisors' namespaces need root"
	}
	for _, p := range []string{"libvirtd", "virtlogd", "qemu-system-x86_64", "nsenter", "unshare", "ip"} {
		if _, err := exec.LookPath(p); err != nil {
			if _, err := os.Stat(filepath.Join("/usr/sbin", p)); err != nil {
				return fmt.Sprintf("%s is not installed: run hack/install-libvirt.sh", p)
			}
		}
	}
	return ""
}

// Kubectl runs the real kubectl as user ("admin", "alice", "bob"), with the
// plugin on PATH, and returns its combined output.
func (e *Env) Kubectl(tb testing.TB, user string, args ...string) (string, error) {
	tb.Helper()
	kubeconfig := e.Cluster.Kubeconfig(launcher.AdminKubeconfig)
	if user != "admin" {
		kubeconfig = e.Cluster.Kubeconfig(user)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Flags go last: kubectl refuses flags before a plugin's name.
	cmd := exec.CommandContext(ctx, "kubectl", append(args, "--kubeconfig", kubeconfig)...)
	cmd.Env = append(os.Environ(),
		"PATH="+e.BinDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"KUBECACHEDIR="+e.kubeDir,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// MustKubectl is Kubectl that fails the test on a non-zero exit.
func (e *Env) MustKubectl(tb testing.TB, user string, args ...string) string {
	tb.Helper()
	out, err := e.Kubectl(tb, user, args...)
	if err != nil {
		tb.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// GuestVM is a VM booting the test guest from the host's image directory.
func GuestVM(namespace, name string) *v1alpha1.VirtualMachine {
	grace := int64(5)
	return &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: v1alpha1.VirtualMachineSpec{
			RunStrategy: v1alpha1.RunStrategyAlways,
			CPUs:        1,
			Memory:      resource.MustParse("128Mi"),
			Kernel: &v1alpha1.KernelBoot{
				Kernel:  v1alpha1.FileSource{HostPath: &v1alpha1.HostPathSource{Path: filepath.Join(GuestDir, "vmlinuz")}},
				Initrd:  &v1alpha1.FileSource{HostPath: &v1alpha1.HostPathSource{Path: filepath.Join(GuestDir, "initrd.img")}},
				Cmdline: "console=ttyS0 quiet",
			},
			TerminationGracePeriodSeconds: &grace,
		},
	}
}

// WaitVM polls the VM until ok holds, and fails the test after timeout.
func (e *Env) WaitVM(tb testing.TB, namespace, name string, timeout time.Duration, what string, ok func(*v1alpha1.VirtualMachine) bool) *v1alpha1.VirtualMachine {
	tb.Helper()
	var last *v1alpha1.VirtualMachine
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		vm, err := e.Admin.VesselV1alpha1().VirtualMachines(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = vm
		return ok(vm), nil
	})
	if err != nil {
		tb.Fatalf("VM %s/%s: %s within %v; last status: %+v", namespace, name, what, timeout, statusOf(last))
	}
	return last
}

// WaitPhase waits for a VM's phase.
func (e *Env) WaitPhase(tb testing.TB, namespace, name string, phase v1alpha1.VirtualMachinePhase) *v1alpha1.VirtualMachine {
	tb.Helper()
	return e.WaitVM(tb, namespace, name, 2*time.Minute, "phase "+string(phase), func(vm *v1alpha1.VirtualMachine) bool {
		return vm.Status.Phase == phase
	})
}

func statusOf(vm *v1alpha1.VirtualMachine) any {
	if vm == nil {
		return "<never read>"
	}
	return vm.Status
}

// ConsoleLog is the VM's virtlogd console log (from power-on) under its
// agent's state directory, whichever hypervisor runs it.
func (e *Env) ConsoleLog(vm *v1alpha1.VirtualMachine) string {
	for _, hv := range e.Hypervisors {
		if b, err := os.ReadFile(filepath.Join(VMDir(hv, vm), "console.log")); err == nil {
			return string(b)
		}
	}
	return ""
}

// VMDir is the directory the agent of hv keeps the VM's files in (disks,
// console log).
func VMDir(hv launcher.Hypervisor, vm *v1alpha1.VirtualMachine) string {
	return filepath.Join(hv.AgentStateDir(), "vms", string(vm.UID))
}

// Hypervisor returns the named hypervisor of the control plane.
func (e *Env) Hypervisor(tb testing.TB, name string) launcher.Hypervisor {
	tb.Helper()
	hv, err := e.Cluster.Hypervisor(name)
	if err != nil {
		tb.Fatal(err)
	}
	return hv
}

// HypervisorOf returns the hypervisor the VM is bound to (as vm was read:
// pass a VM read after it was scheduled).
func (e *Env) HypervisorOf(tb testing.TB, vm *v1alpha1.VirtualMachine) launcher.Hypervisor {
	tb.Helper()
	name := vm.Status.NodeName
	if name == "" {
		name = vm.Spec.NodeName
	}
	if name == "" {
		tb.Fatalf("VM %s/%s is bound to no hypervisor yet", vm.Namespace, vm.Name)
	}
	return e.Hypervisor(tb, name)
}

// Virsh runs virsh on the libvirtd of the VM's hypervisor and returns its
// combined output.
func (e *Env) Virsh(tb testing.TB, vm *v1alpha1.VirtualMachine, args ...string) (string, error) {
	tb.Helper()
	hv := e.HypervisorOf(tb, vm)
	out, err := exec.Command("virsh", append([]string{"-c", hv.URI()}, args...)...).CombinedOutput()
	return string(out), err
}

// DomState is `virsh domstate` of the VM's domain (named by its UID) on
// its hypervisor: running, paused, shut off, ...
func (e *Env) DomState(tb testing.TB, vm *v1alpha1.VirtualMachine) string {
	tb.Helper()
	out, err := e.Virsh(tb, vm, "domstate", string(vm.UID))
	if err != nil {
		tb.Fatalf("virsh domstate %s: %v\n%s", vm.UID, err, out)
	}
	return strings.TrimSpace(out)
}

// Libvirt is a connection of the test's own to the named hypervisor's
// libvirtd, kept until the package's tests end.
func (e *Env) Libvirt(tb testing.TB, name string) *hypervisor.Libvirt {
	tb.Helper()
	e.libvirtMu.Lock()
	defer e.libvirtMu.Unlock()
	if c, ok := e.libvirts[name]; ok {
		return c.lv
	}
	lv := hypervisor.NewLibvirt(e.Hypervisor(tb, name).Socket())
	runCtx, stop := context.WithCancel(context.Background())
	go lv.Run(runCtx)
	ctx, cancel := context.WithTimeout(runCtx, 30*time.Second)
	defer cancel()
	if err := lv.WaitConnected(ctx); err != nil {
		stop()
		tb.Fatalf("connect to the libvirtd of hypervisor %s: %v", name, err)
	}
	if e.libvirts == nil {
		e.libvirts = map[string]*libvirtConn{}
	}
	e.libvirts[name] = &libvirtConn{lv: lv, stop: stop}
	return lv
}

func (e *Env) closeLibvirts() {
	e.libvirtMu.Lock()
	defer e.libvirtMu.Unlock()
	for _, c := range e.libvirts {
		c.stop()
	}
	e.libvirts = nil
}

// DomainsOf returns the hypervisors whose libvirtd has a domain with the
// VM's UID (none once its agent has removed it).
func (e *Env) DomainsOf(tb testing.TB, vm *v1alpha1.VirtualMachine) []string {
	tb.Helper()
	var found []string
	for _, hv := range e.Hypervisors {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := e.Libvirt(tb, hv.Name).Lookup(ctx, string(vm.UID))
		cancel()
		switch {
		case err == nil:
			found = append(found, hv.Name)
		case !errors.Is(err, hypervisor.ErrNotFound):
			tb.Fatalf("look up domain %s on %s: %v", vm.UID, hv.Name, err)
		}
	}
	return found
}

// WaitLog waits until the VM's console log contains marker.
func (e *Env) WaitLog(tb testing.TB, vm *v1alpha1.VirtualMachine, marker string) {
	tb.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		return strings.Contains(e.ConsoleLog(vm), marker), nil
	})
	if err != nil {
		log := e.ConsoleLog(vm)
		if len(log) > 2000 {
			log = log[len(log)-2000:]
		}
		tb.Fatalf("VM %s/%s: console log lacks %q; end of log:\n%s", vm.Namespace, vm.Name, marker, log)
	}
}

// deleteAllVMs deletes every VM and waits (bounded) until the agents have
// released them, as a user would before leaving; Destroy ends whatever
// they did not get to. It returns the UIDs it found.
func (e *Env) deleteAllVMs() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vms := e.Admin.VesselV1alpha1().VirtualMachines(metav1.NamespaceAll)
	list, err := vms.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var uids []string
	for _, vm := range list.Items {
		uids = append(uids, string(vm.UID))
		_ = e.Admin.VesselV1alpha1().VirtualMachines(vm.Namespace).Delete(ctx, vm.Name, metav1.DeleteOptions{})
	}
	_ = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		list, err := vms.List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == 0, nil
	})
	return uids
}

// RunningVM creates the test guest as namespace/name (as the admin) and
// waits until it runs and has printed its boot-done marker.
func (e *Env) RunningVM(tb testing.TB, namespace, name string) *v1alpha1.VirtualMachine {
	tb.Helper()
	vms := e.Admin.VesselV1alpha1().VirtualMachines(namespace)
	if _, err := vms.Get(context.Background(), name, metav1.GetOptions{}); err != nil {
		if _, err := vms.Create(context.Background(), GuestVM(namespace, name), metav1.CreateOptions{}); err != nil {
			tb.Fatalf("create VM %s/%s: %v", namespace, name, err)
		}
	}
	vm := e.WaitPhase(tb, namespace, name, v1alpha1.VirtualMachineRunning)
	e.WaitLog(tb, vm, "VESSEL-BOOT done")
	return vm
}

// QEMUPID is the pid of the QEMU process running the domain whose UUID is
// uid (the VM's UID), found by its command line, so it does not depend on
// how the domain is named. It fails the test when no such process runs.
func QEMUPID(tb testing.TB, uid string) int {
	tb.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range procs {
		cmdline, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "qemu-system") {
			continue
		}
		for i, a := range args[:len(args)-1] {
			if a == "-uuid" && args[i+1] == uid {
				pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				if err != nil {
					tb.Fatal(err)
				}
				return pid
			}
		}
	}
	tb.Fatalf("no QEMU process runs the domain with UUID %s", uid)
	return 0
}
