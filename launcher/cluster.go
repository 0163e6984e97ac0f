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
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/vessel-vm/vessel/launcher/pki"
)

// Options configure Start. StateDir is required, and so are Hypervisors
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
	// ReaperBinary, DefaultBinDir's vessel-reaper by default, runs each
	// hypervisor's libvirtd and reaps its QEMUs the moment they exit (see
	// cmd/vessel-reaper): libvirt waits for that on every domain stop.
	ReaperBinary string
	// NoAgent starts the control plane without hypervisors (no libvirt
	// needed).
	NoAgent bool
	// Hypervisors name the hypervisors to run, required unless NoAgent.
	// Each is a vessel-agent registered as the Hypervisor of that name,
	// with a libvirtd (and virtlogd) of its own in its own mount and
	// network namespaces; the namespaces are connected by a fabric (see
	// Hypervisor and package libvirtd). There is deliberately no default:
	// Hypervisor names are cluster-wide, and tests pass names unique per
	// run.
	Hypervisors []string
	// KubectlBinary renders manifests (kubectl kustomize). Default: kubectl
	// on PATH.
	KubectlBinary string
	// ManifestsDir is the kustomization applied before the vessel-apiserver
	// starts. Default: manifests/local at the repository root.
	ManifestsDir string
	// Users get a client certificate and a kubeconfig each, and no
	// permissions. Default: alice and bob.
	Users []string
	// AgentHosts are extra names for every agent's serving certificate
	// (each also has its hypervisor's name and 127.0.0.1).
	AgentHosts []string
	// AgentServingCertsFromCSR makes each agent get its stream serving
	// certificate through the CSR API (--stream-cert-dir, signed by the
	// vessel-apiserver), as in manifests/cluster, instead of from the
	// launcher's PKI.
	AgentServingCertsFromCSR bool
	// KubeAPIServerArgs are appended to the kube-apiserver command line,
	// for instance --v=4 while debugging.
	KubeAPIServerArgs []string
	// VesselAPIServerArgs and AgentArgs are appended to the
	// vessel-apiserver's and the agent's command lines, for instance
	// --writable-host-path-roots (which both need) or the agent's
	// --image-allowed-cidrs.
	VesselAPIServerArgs []string
	AgentArgs           []string
	// APIServers is how many vessel-apiservers run (default 1); more than
	// one needs EtcdMembers. Each serves on a port of its own, the
	// APIService's Service has an EndpointSlice for each (ready while it
	// runs), and one at a time runs the controllers (a Lease).
	APIServers int
	// EtcdMembers is how many members the vessel-apiservers' etcd cluster
	// has, each a real etcd process with client and peer TLS from its own
	// CA; 0 (the default) keeps the etcd embedded in the one
	// vessel-apiserver.
	EtcdMembers int
	// ReadyTimeout bounds the wait for each component. Default: 2 minutes,
	// generous for a loaded 2-core machine.
	ReadyTimeout time.Duration
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any) `json:"-"`
}

// validateHypervisors checks the hypervisors' names; StateDir must be set.
func (o *Options) validateHypervisors() error {
	if o.NoAgent {
		return nil
	}
	if len(o.Hypervisors) == 0 {
		return errors.New("no hypervisors named (Options.Hypervisors), and NoAgent is not set")
	}
	l, err := newLayout(o.StateDir)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var errs []error
	for _, name := range o.Hypervisors {
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("hypervisor name %q: %s", name, strings.Join(msgs, "; ")))
			continue
		}
		if seen[name] {
			errs = append(errs, fmt.Errorf("hypervisor %q is named twice", name))
		}
		seen[name] = true
		host := Hypervisor{Name: name, Dir: l.hypervisorDir(name)}.LibvirtHost()
		if n := len(host.Socket()); n > 107 {
			errs = append(errs, fmt.Errorf("hypervisor %s: its libvirtd socket %s would be %d bytes long, more than a UNIX socket takes (107): use a shorter state directory or name", name, host.Socket(), n))
		}
	}
	return errors.Join(errs...)
}

// maxReplicas bounds APIServers and EtcdMembers: a local control plane, not
// a data center.
const maxReplicas = 9

// validateReplicas checks APIServers (completed) and EtcdMembers.
func (o *Options) validateReplicas() error {
	var errs []error
	if o.APIServers < 1 || o.APIServers > maxReplicas {
		errs = append(errs, fmt.Errorf("vessel-apiservers: between 1 and %d, got %d", maxReplicas, o.APIServers))
	}
	if o.EtcdMembers < 0 || o.EtcdMembers > maxReplicas {
		errs = append(errs, fmt.Errorf("etcd members: between 0 (embedded) and %d, got %d", maxReplicas, o.EtcdMembers))
	}
	if o.APIServers > 1 && o.EtcdMembers == 0 {
		errs = append(errs, fmt.Errorf("%d vessel-apiservers need an etcd cluster to share (etcd members), not each its own embedded etcd", o.APIServers))
	}
	return errors.Join(errs...)
}

func (o *Options) replicas() replicaCounts {
	return replicaCounts{etcdMembers: o.EtcdMembers, apiServers: max(o.APIServers, 1)}
}

// DefaultUsers are the tenant users Start creates when Options.Users is
// empty.
var DefaultUsers = []string{"alice", "bob"}

func (o *Options) complete() error {
	for name, path := range map[string]*string{
		"etcd": &o.EtcdBinary, "kube-apiserver": &o.KubeAPIServerBinary,
		"kube-controller-manager": &o.KubeControllerManagerBinary, "vessel-apiserver": &o.VesselAPIServerBinary,
		"vessel-agent": &o.AgentBinary, "vessel-reaper": &o.ReaperBinary,
	} {
		if *path == "" {
			bin, err := DefaultBinDir()
			if err != nil {
				return err
			}
			*path = filepath.Join(bin, name)
		}
	}
	if err := o.validateHypervisors(); err != nil {
		return err
	}
	if o.APIServers == 0 {
		o.APIServers = 1
	}
	if err := o.validateReplicas(); err != nil {
		return err
	}
	if o.ManifestsDir == "" {
		root, err := RepoRoot()
		if err != nil {
			return err
		}
		o.ManifestsDir = filepath.Join(root, "manifests", "local")
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
		binaries = append(binaries, &o.AgentBinary, &o.ReaperBinary)
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

	opts        Options
	layout      layout
	plan        *hypervisorPlan
	hypervisors []Hypervisor // those opts run, in their order
	comps       []*component // in start order
	sup         *supervisor
	// networkMu makes hypervisors set up their namespaces and fabric
	// links one at a time.
	networkMu sync.Mutex
	// endpointMu guards endpointTemplate, manifests/local's EndpointSlice
	// once rendered (see publishEndpoint).
	endpointMu       sync.Mutex
	endpointTemplate *unstructured.Unstructured
}

// Start brings up the control plane (see the package documentation) as
// detached processes and waits until each is ready. Nothing restarts a
// process that exits: tests that crash components on purpose restart them
// with RestartAgent and RestartVesselAPIServer. (`vessel-up` runs the same
// components under Supervise instead, which does.)
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
	c, err := newCluster(l, opts, false)
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(c.comps); {
		group := c.startGroup(i)
		begin := time.Now()
		if err := c.startTogether(ctx, group); err != nil {
			c.Stop()
			return nil, err
		}
		for _, comp := range group {
			opts.Logf("%s ready in %v", comp.name, time.Since(begin).Round(time.Millisecond))
		}
		i += len(group)
	}
	return c, nil
}

// startGroup returns the components from the i-th on that start together:
// the i-th and the next ones of its startGroup, if it has one.
func (c *Cluster) startGroup(i int) []*component {
	j := i + 1
	if name := c.comps[i].startGroup; name != "" {
		for j < len(c.comps) && c.comps[j].startGroup == name {
			j++
		}
	}
	return c.comps[i:j]
}

// startTogether launches every component of group, then waits until each
// is ready.
func (c *Cluster) startTogether(ctx context.Context, group []*component) error {
	errs := make([]error, len(group))
	var wg sync.WaitGroup
	for i, comp := range group {
		wg.Go(func() {
			if _, err := c.sup.start(ctx, comp); err != nil {
				errs[i] = fmt.Errorf("start %s: %w", comp.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// newCluster prepares what the components need (PKI, ports, kubeconfigs)
// and defines them. keepPorts takes the saved ports as they are, for when
// components already run on them.
func newCluster(l layout, opts Options, keepPorts bool) (*Cluster, error) {
	c := &Cluster{StateDir: l.root, opts: opts, layout: l}
	var err error
	var names []string
	if !opts.NoAgent {
		names = opts.Hypervisors
	}
	if c.PKI, err = pki.Ensure(l.pkiDir(), pki.Options{Users: opts.Users, Hypervisors: names, AgentHosts: opts.AgentHosts, EtcdMembers: opts.EtcdMembers}); err != nil {
		return nil, fmt.Errorf("prepare PKI: %w", err)
	}
	if c.plan, err = ensurePlan(l, names); err != nil {
		return nil, err
	}
	for _, name := range names {
		hv, _ := c.plan.get(name)
		c.hypervisors = append(c.hypervisors, hv)
	}
	if keepPorts {
		c.Ports, err = loadPorts(l.portsFile(), names, opts.replicas())
	} else {
		c.Ports, err = ensurePorts(l.portsFile(), names, opts.replicas())
	}
	if err != nil {
		return nil, err
	}
	if err := c.writeKubeconfigs(); err != nil {
		return nil, err
	}
	if c.comps, err = c.components(); err != nil {
		return nil, err
	}
	c.sup = newSupervisor(l, c.comps, opts.Logf)
	return c, nil
}

// Stop terminates the processes this Cluster started, agents first, and
// waits for them. Guests keep running in their hypervisors' namespaces (as
// after Down), and so does the virtlogd of a hypervisor that has some: the
// next Start adopts them; Destroy ends them. The state directory is kept:
// Start reuses it.
func (c *Cluster) Stop() {
	comps := slices.Clone(c.comps)
	slices.SortStableFunc(comps, func(a, b *component) int { return stopRank(a.name) - stopRank(b.name) })
	for _, comp := range comps {
		if comp.proc == nil {
			continue
		}
		if hv, ok := c.virtlogdOf(comp.name); ok && guestsRun(hv) {
			continue
		}
		comp.proc.stop()
	}
}

// Hypervisors are the hypervisors the cluster runs.
func (c *Cluster) Hypervisors() []Hypervisor { return slices.Clone(c.hypervisors) }

// Hypervisor returns the named hypervisor of the cluster.
func (c *Cluster) Hypervisor(name string) (Hypervisor, error) {
	for _, hv := range c.hypervisors {
		if hv.Name == name {
			return hv, nil
		}
	}
	return Hypervisor{}, fmt.Errorf("this control plane runs no hypervisor %q", name)
}

// virtlogdOf returns the hypervisor whose virtlogd the component is.
func (c *Cluster) virtlogdOf(component string) (Hypervisor, bool) {
	for _, hv := range c.hypervisors {
		if component == VirtlogdComponent(hv.Name) {
			return hv, true
		}
	}
	return Hypervisor{}, false
}

// Down stops a control plane started from stateDir by any process (the
// `make down` path, after `make up` has long returned), using the PID
// files: first the supervisor, so that it restarts nothing, then the
// agents, the libvirtds, the virtlogds and the control plane in reverse
// start order. Processes that are gone, or whose PID now belongs to
// something else, are skipped. Guests keep running in their hypervisors'
// namespaces, and so does the virtlogd of a hypervisor that has some
// (their console logs go through it): the next Up or Start adopts them.
// The state directory is kept, but for the supervisor's status.
func Down(stateDir string) error {
	l, err := newLayout(stateDir)
	if err != nil {
		return err
	}
	if err := stopByPIDFile(l.pidFile(supervisorName), l.root); err != nil {
		return fmt.Errorf("stop the supervisor: %w", err)
	}
	plan, err := loadPlan(l)
	if err != nil {
		return err
	}
	var errs []error
	for _, pidFile := range pidFilesInStopOrder(l) {
		if hv, ok := virtlogdOf(plan, pidFile); ok && guestsRun(hv) {
			continue
		}
		if err := stopByPIDFile(pidFile, l.root); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", strings.TrimSuffix(filepath.Base(pidFile), ".pid"), err))
		}
	}
	if err := os.Remove(l.statusFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove the supervisor's status: %w", err))
	}
	return errors.Join(errs...)
}

// pidFilesInStopOrder lists the PID files of the state directory: first
// the supervisor's, then the components' by stopRank (those of the
// control plane whether they exist or not).
func pidFilesInStopOrder(l layout) []string {
	names := slices.Clone(startOrder)
	found, _ := filepath.Glob(filepath.Join(l.runDir(), "*.pid"))
	for _, f := range found {
		name := strings.TrimSuffix(filepath.Base(f), ".pid")
		if name != supervisorName && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.SortStableFunc(names, func(a, b string) int { return stopRank(a) - stopRank(b) })
	files := []string{l.pidFile(supervisorName)}
	for _, name := range names {
		files = append(files, l.pidFile(name))
	}
	return files
}

// virtlogdOf returns the hypervisor whose virtlogd the PID file is for.
func virtlogdOf(plan *hypervisorPlan, pidFile string) (Hypervisor, bool) {
	name := strings.TrimSuffix(filepath.Base(pidFile), ".pid")
	for _, hv := range plan.Hypervisors {
		if name == VirtlogdComponent(hv.Name) {
			return hv, true
		}
	}
	return Hypervisor{}, false
}

// checkNotRunning refuses to start a second control plane on the same
// state directory (two etcds on one data directory corrupt it) and clears
// PID files left by processes that are gone. A virtlogd that stayed with
// its guests through Down is no control plane: Start adopts it.
func checkNotRunning(l layout) error {
	plan, err := loadPlan(l)
	if err != nil {
		return err
	}
	for _, pidFile := range pidFilesInStopOrder(l) {
		if _, ok := virtlogdOf(plan, pidFile); ok {
			continue
		}
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

// anyRunning reports whether a component of the state directory runs,
// not counting virtlogds (which stay with their guests through Down).
func anyRunning(l layout) bool {
	for _, pidFile := range pidFilesInStopOrder(l)[1:] {
		name := strings.TrimSuffix(filepath.Base(pidFile), ".pid")
		if strings.HasPrefix(name, virtlogdName+"@") {
			continue
		}
		if _, ok := ownedPID(pidFile, l.root); ok {
			return true
		}
	}
	return false
}

// Options returns the completed options the cluster was started with.
func (c *Cluster) Options() Options { return c.opts }
