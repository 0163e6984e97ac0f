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

// Package vm is the node agent's VM controller: it makes libvirt run the
// VirtualMachines bound to this node, KubeVirt virt-handler style.
// Informer events, libvirt lifecycle events and a periodic resync only
// enqueue VM keys. A sync observes the VM and its domain, decides with a
// pure function (decide.go), takes one action (act.go) and reports the
// recomputed status (report.go).
package vm

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	vesselinformers "github.com/vessel-vm/vessel/generated/informers/externalversions/vessel/v1alpha1"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/boundvm"
	"github.com/vessel-vm/vessel/node-agent/controller/worker"
	"github.com/vessel-vm/vessel/node-agent/disks"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/network"
)

// Config are the controller's settings.
type Config struct {
	// Node is this node's Hypervisor name: the VMs bound to it are synced.
	Node string
	// StateDir holds the per-VM files (vms/<uid>/).
	StateDir string
	// AllowedHostPathRoots are the shared hostPath roots: VMs may read
	// files under them, never write.
	AllowedHostPathRoots []string
	// WritableHostPathRoots are hostPath roots divided per namespace: a VM
	// may use files under <root>/<its namespace>/ only.
	WritableHostPathRoots []string
	// MaxDiskVirtualSize bounds the disk a qcow2 hostPath file makes (0: no
	// limit).
	MaxDiskVirtualSize int64
	// KVM says guests may use hardware acceleration.
	KVM bool
	// ACPIInterval is how often a shutdown request is repeated while a
	// guest ignores it.
	ACPIInterval time.Duration
	// ResyncPeriod is how often every VM is compared with libvirt again and
	// orphaned domains are collected.
	ResyncPeriod time.Duration
	// Simulated makes provisioning name each disk's file without
	// downloading, creating or checking anything on the host, and give
	// Managed interfaces a nominal bridge without a managed network: for a
	// simulated hypervisor (node-agent/hypervisor/sim), which uses neither.
	Simulated bool
}

// Identity is the Hypervisor object this agent registered.
type Identity interface {
	// HypervisorUID is its metadata.uid, stamped into the domains this
	// agent defines; only domains with it are collected as orphans.
	HypervisorUID() string
}

// Deps are the controller's collaborators.
type Deps struct {
	Client versioned.Interface
	// VMs is the informer of the VMs bound to this node (filtered on
	// spec.nodeName by the server).
	VMs vesselinformers.VirtualMachineInformer
	// Restores lists restores, to stay away from a VM being reverted.
	Restores listers.VirtualMachineRestoreLister
	// MigrationHolds says a migration from this node has vm's guest (nil:
	// none ever does).
	MigrationHolds func(vm *v1alpha1.VirtualMachine) bool
	// Incoming says the domain uid is a guest a migration is bringing
	// here: orphan collection spares it although its VM (bound to the
	// source until the handover) is not this agent's to read (nil: none
	// ever is).
	Incoming   func(uid string) bool
	Hypervisor hypervisor.Hypervisor
	// Images is the node's image cache.
	Images *disks.Cache
	// Locks is shared with the controllers that drive domains too.
	Locks    *boundvm.Locks
	Identity Identity
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
	// Network is the managed guest network; nil: Managed interfaces are
	// refused.
	Network *network.Manager
}

// Controller reconciles the VMs bound to one hypervisor.
type Controller struct {
	cfg            Config
	client         versioned.Interface
	vms            listers.VirtualMachineLister
	indexer        cache.Indexer
	synced         cache.InformerSynced
	restores       listers.VirtualMachineRestoreLister
	migrationHolds func(vm *v1alpha1.VirtualMachine) bool
	incoming       func(uid string) bool
	hv             hypervisor.Hypervisor
	images         *disks.Cache
	locks          *boundvm.Locks
	identity       Identity
	recorder       record.EventRecorder
	clock          clock.PassiveClock
	network        *network.Manager
	queue          *worker.Queue
	expected       *statusExpectations
	// agents watches the guest agents of running guests; nil when the
	// hypervisor cannot reach them.
	agents *agentWatcher
	// runCtx is Run's context: provisioning outlives a pass but not Run.
	runCtx context.Context

	mu     sync.Mutex
	states map[string]*vmState // by namespace/name
	// unclaimed are domains with this node's hypervisor name that orphan
	// collection leaves alone (another control plane's, or unstamped),
	// logged once each.
	unclaimed map[string]bool
}

const uidIndex = "uid"

// Defaults for Config's zero values.
const (
	DefaultACPIInterval = 3 * time.Second
	DefaultResyncPeriod = 30 * time.Second
)

// New builds the controller and registers its informer handlers; start the
// informer before Run.
func New(cfg Config, deps Deps) (*Controller, error) {
	if cfg.Node == "" || cfg.StateDir == "" {
		return nil, fmt.Errorf("VM controller needs a node name and a state directory")
	}
	if cfg.ACPIInterval <= 0 {
		cfg.ACPIInterval = DefaultACPIInterval
	}
	if cfg.ResyncPeriod <= 0 {
		cfg.ResyncPeriod = DefaultResyncPeriod
	}
	c := &Controller{
		cfg:            cfg,
		client:         deps.Client,
		vms:            deps.VMs.Lister(),
		restores:       deps.Restores,
		migrationHolds: deps.MigrationHolds,
		incoming:       deps.Incoming,
		hv:             deps.Hypervisor,
		images:         deps.Images,
		locks:          deps.Locks,
		identity:       deps.Identity,
		recorder:       deps.Recorder,
		clock:          deps.Clock,
		network:        deps.Network,
		queue:          worker.NewQueue("vessel-agent-vms"),
		expected:       newStatusExpectations(deps.Clock),
		states:         map[string]*vmState{},
		unclaimed:      map[string]bool{},
	}
	if ga, ok := deps.Hypervisor.(hypervisor.GuestAgent); ok {
		c.agents = newAgentWatcher(ga, deps.Clock, c.queue.Add)
	}
	inf := deps.VMs.Informer()
	if err := inf.AddIndexers(cache.Indexers{uidIndex: func(obj any) ([]string, error) {
		vm, ok := obj.(*v1alpha1.VirtualMachine)
		if !ok {
			return nil, nil
		}
		return []string{string(vm.UID)}, nil
	}}); err != nil {
		return nil, fmt.Errorf("add uid index: %w", err)
	}
	if _, err := inf.AddEventHandler(worker.Handler(c.queue.Enqueue)); err != nil {
		return nil, fmt.Errorf("add VM event handler: %w", err)
	}
	c.indexer = inf.GetIndexer()
	c.synced = inf.HasSynced
	return c, nil
}

// Run syncs VMs with workers goroutines and resyncs periodically until ctx
// ends. Guests keep running when it returns.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.runCtx = ctx
	var wg sync.WaitGroup
	wg.Go(func() { wait.UntilWithContext(ctx, c.Resync, c.cfg.ResyncPeriod) })
	c.queue.Run(ctx, workers, c.sync)
	wg.Wait()
}

// Enqueue asks for a pass over the VM with key namespace/name.
func (c *Controller) Enqueue(key string) { c.queue.Add(key) }

// DomainChanged asks for a pass over the VM whose domain has UUID uid
// (a libvirt lifecycle event).
func (c *Controller) DomainChanged(uid string) {
	objs, err := c.indexer.ByIndex(uidIndex, uid)
	if err != nil || len(objs) == 0 {
		return // not ours, or an orphan the resync collects
	}
	c.queue.Enqueue(objs[0])
}

// AgentChanged asks for a pass over the VM whose domain has UUID uid and
// for its guest agent to be asked again (a libvirt agent lifecycle event).
func (c *Controller) AgentChanged(uid string) {
	c.agents.changed(uid)
	c.DomainChanged(uid)
}

// Resync enqueues every VM and collects orphaned domains. The agent calls
// it after libvirtd (re)connected too: anything may have changed meanwhile.
func (c *Controller) Resync(ctx context.Context) {
	for _, key := range c.indexer.ListKeys() {
		c.queue.Add(key)
	}
	if err := c.collectOrphans(ctx); err != nil {
		klog.FromContext(ctx).Error(err, "Collecting orphaned domains failed")
	}
}

// GuestStarted records that someone else with the VM's lock (a restore)
// started the guest of the VM key with UID uid at at, so status.startedAt
// moves as for a start of the controller's own, and asks for a pass.
func (c *Controller) GuestStarted(key, uid string, at time.Time) {
	st := c.state(key, uid)
	c.mu.Lock()
	t := metav1.NewTime(at)
	st.lastStart = &t
	c.mu.Unlock()
	c.queue.Add(key)
}

func (c *Controller) vmDir(uid string) string { return filepath.Join(c.cfg.StateDir, "vms", uid) }

// event records a Kubernetes Event about vm.
func (c *Controller) event(vm *v1alpha1.VirtualMachine, typ, reason, format string, args ...any) {
	c.recorder.Eventf(vm, typ, reason, format, args...)
}
