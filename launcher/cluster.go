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
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vessel-vm/vessel/launcher/pki"
)

// startOrder lists the processes in the order they start; they stop in
// reverse.
var startOrder = []string{etcdName, kubeAPIServerName, kubeControllerManagerName, vesselAPIServerName, agentName}

// Options configure Start. StateDir is required, and so is HypervisorName
// unless NoAgent; every other field has a working default.
type Options struct {
	// StateDir holds PKI, data, PID files and logs; see DefaultStateDir.
	StateDir string
	// EtcdBinary and KubeAPIServerBinary default to DefaultBinDir's etcd
	// and kube-apiserver (hack/build-etcd.sh, hack/build-kubernetes.sh).
	EtcdBinary          string
	KubeAPIServerBinary string
	// KubeControllerManagerBinary defaults to DefaultBinDir's
	// kube-controller-manager (hack/build-kubernetes.sh).
	KubeControllerManagerBinary string
	// VesselAPIServerBinary defaults to DefaultBinDir's vessel-apiserver
	// (`make build`).
	VesselAPIServerBinary string
	// VesselAPIServerImage, when set, is an OCI image layout (`make
	// images`' _output/images/vessel-apiserver): the vessel-apiserver then
	// runs from the image's root filesystem, not from VesselAPIServerBinary.
	VesselAPIServerImage string
	// AgentBinary defaults to DefaultBinDir's vessel-agent (`make build`).
	AgentBinary string
	// NoAgent starts the control plane without a node agent (no libvirt needed).
	NoAgent bool
	// HypervisorName is the agent's Hypervisor, required unless NoAgent.
	// There is deliberately no default: an agent destroys the domains
	// stamped with its name whose VM its own API does not know, so a
	// control plane that took the name of another one on the same libvirtd
	// (the host name `vessel-up` uses, say) would remove that one's guests.
	// Tests pass a name unique per run.
	HypervisorName string
	// KubectlBinary renders manifests (kubectl kustomize). Default: kubectl
	// on PATH.
	KubectlBinary string
	// Users get a client certificate and a kubeconfig each, and no
	// permissions. Default: alice and bob.
	Users []string
	// AgentHosts are extra names for the agent's serving certificate.
	AgentHosts []string
	// KubeAPIServerArgs are appended to the kube-apiserver command line,
	// for instance --v=4 while debugging.
	KubeAPIServerArgs []string
	// VesselAPIServerArgs and AgentArgs are appended to the
	// vessel-apiserver's and the agent's command lines, for instance
	// --writable-host-path-roots (which both need) or the agent's
	// --image-allowed-cidrs.
	VesselAPIServerArgs []string
	AgentArgs           []string
	// ReadyTimeout bounds the wait for each component. Default: 2 minutes,
	// generous for a loaded 2-core machine.
	ReadyTimeout time.Duration
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
}

// DefaultUsers are the tenant users Start creates when Options.Users is
// empty.
var DefaultUsers = []string{"alice", "bob"}

func (o *Options) complete() error {
	bin, err := DefaultBinDir()
	if err != nil {
		return err
	}
	for name, path := range map[string]*string{
		"etcd": &o.EtcdBinary, "kube-apiserver": &o.KubeAPIServerBinary,
		"kube-controller-manager": &o.KubeControllerManagerBinary, "vessel-apiserver": &o.VesselAPIServerBinary,
		"vessel-agent": &o.AgentBinary,
	} {
		if *path == "" {
			*path = filepath.Join(bin, name)
		}
	}
	if !o.NoAgent && o.HypervisorName == "" {
		return errors.New("no hypervisor name given for the agent (Options.HypervisorName)")
	}
	if o.KubectlBinary == "" {
		kubectl, err := exec.LookPath("kubectl")
		if err != nil {
			return fmt.Errorf("find kubectl: %w", err)
		}
		o.KubectlBinary = kubectl
	}
	binaries := []*string{&o.EtcdBinary, &o.KubeAPIServerBinary, &o.KubeControllerManagerBinary}
	if o.VesselAPIServerImage == "" {
		binaries = append(binaries, &o.VesselAPIServerBinary)
	}
	if !o.NoAgent {
		binaries = append(binaries, &o.AgentBinary)
	}
	for _, bin := range binaries {
		abs, err := filepath.Abs(*bin)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", *bin, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("find %s (run `make build`): %w",
				filepath.Base(abs), err)
		}
		*bin = abs
	}
	if o.VesselAPIServerImage != "" {
		abs, err := filepath.Abs(o.VesselAPIServerImage)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", o.VesselAPIServerImage, err)
		}
		o.VesselAPIServerImage = abs
	}
	if len(o.Users) == 0 {
		o.Users = DefaultUsers
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 2 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return nil
}

// Cluster is a running control plane.
type Cluster struct {
	// StateDir is the absolute state directory.
	StateDir string
	PKI      *pki.PKI
	Ports    Ports

	opts   Options
	layout layout
	procs  []*process // in start order
	// agentArgs are the agent's flags, kept to restart it.
	agentArgs []string
}

// Start brings up the control plane (see the package documentation) as
// detached processes and waits until each is ready.
// ctx bounds the start only: the processes outlive it, and the launcher,
// until Stop or Down. On failure, whatever was started is stopped again.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	l, err := newLayout(opts.StateDir)
	if err != nil {
		return nil, err
	}
	if err := opts.complete(); err != nil {
		return nil, err
	}
	if err := l.create(); err != nil {
		return nil, err
	}
	if err := checkNotRunning(l); err != nil {
		return nil, err
	}

	c := &Cluster{StateDir: l.root, opts: opts, layout: l}
	if c.PKI, err = pki.Ensure(l.pkiDir(), pki.Options{Users: opts.Users, AgentHosts: opts.AgentHosts}); err != nil {
		return nil, fmt.Errorf("prepare PKI: %w", err)
	}
	if c.Ports, err = ensurePorts(l.portsFile()); err != nil {
		return nil, err
	}
	if err := c.writeKubeconfigs(); err != nil {
		return nil, err
	}

	steps := []struct {
		name  string
		start func(context.Context) error
	}{
		{etcdName, c.startEtcd},
		{kubeAPIServerName, c.startKubeAPIServer},
		{kubeControllerManagerName, c.startKubeControllerManager},
	}
	for _, step := range steps {
		begin := time.Now()
		if err := step.start(ctx); err != nil {
			c.Stop()
			return nil, fmt.Errorf("start %s: %w", step.name, err)
		}
		opts.Logf("%s ready in %v", step.name, time.Since(begin).Round(time.Millisecond))
	}
	if err := c.startVesselAPIServer(ctx); err != nil {
		c.Stop()
		return nil, fmt.Errorf("start %s: %w", vesselAPIServerName, err)
	}
	if !opts.NoAgent {
		begin := time.Now()
		if err := c.startAgent(ctx); err != nil {
			c.Stop()
			return nil, fmt.Errorf("start %s: %w", agentName, err)
		}
		opts.Logf("%s ready (Hypervisor registered) in %v", agentName, time.Since(begin).Round(time.Millisecond))
	}
	return c, nil
}

// Stop terminates the processes this Cluster started, in reverse order,
// and waits for them. The state directory is kept: Start reuses it.
func (c *Cluster) Stop() {
	for _, p := range slices.Backward(c.procs) {
		p.stop()
	}
	c.procs = nil
}

// Down stops a control plane started from stateDir by any process (the
// `make down` path, after `make up` has long returned), using the PID
// files. Processes that are gone, or whose PID now belongs to something
// else, are skipped. The state directory is kept.
func Down(stateDir string) error {
	l, err := newLayout(stateDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, pidFile := range pidFilesInStopOrder(l) {
		if err := stopByPIDFile(pidFile, l.root); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", strings.TrimSuffix(filepath.Base(pidFile), ".pid"), err))
		}
	}
	return errors.Join(errs...)
}

// pidFilesInStopOrder lists the PID files of the state directory: first
// those of processes not in startOrder (added later, such as agents, and
// depending on the API), then the known ones in reverse start order.
func pidFilesInStopOrder(l layout) []string {
	known := map[string]bool{}
	for _, name := range startOrder {
		known[l.pidFile(name)] = true
	}
	found, _ := filepath.Glob(filepath.Join(l.runDir(), "*.pid"))
	var files []string
	for _, f := range found {
		if !known[f] {
			files = append(files, f)
		}
	}
	for _, name := range slices.Backward(startOrder) {
		files = append(files, l.pidFile(name))
	}
	return files
}

// checkNotRunning refuses to start a second control plane on the same
// state directory (two etcds on one data directory corrupt it) and clears
// PID files left by processes that are gone.
func checkNotRunning(l layout) error {
	for _, pidFile := range pidFilesInStopOrder(l) {
		if pid, ok := ownedPID(pidFile, l.root); ok {
			return fmt.Errorf("a control plane already runs from %s (%s, pid %d); stop it first",
				l.root, strings.TrimSuffix(filepath.Base(pidFile), ".pid"), pid)
		}
		if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale %s: %w", pidFile, err)
		}
	}
	return nil
}

// Options returns the completed options the cluster was started with.
func (c *Cluster) Options() Options { return c.opts }
