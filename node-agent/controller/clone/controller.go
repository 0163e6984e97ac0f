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

// Package clone is the node agent's clone controller: it makes the disks
// and domain of a VirtualMachine that a VirtualMachineClone created and the
// scheduler bound to this node (the hypervisor holding the clone's
// source), from a clone image of the source (hypervisor.Cloner). A memory
// clone's guest is resumed from the source's memory and told its new
// identity; a disks-only clone's domain is defined and the VM controller
// boots it. The vessel-apiserver's clone controller creates the VM and
// fails what no agent can do; this one takes a clone from InProgress to
// Succeeded or Failed. It also collects the clone images no VM needs any
// more.
package clone

import (
	"context"
	"fmt"
	"sync"
	"time"

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
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/network"
)

// VMController is what a clone needs of the VM controller, which owns the
// VM's power state and status: it stays away from a clone's VM until its
// domain exists (v1alpha1.AnnotationClone), and is told when the clone
// started the guest.
type VMController interface {
	GuestStarted(key, uid string, at time.Time)
	Enqueue(key string)
}

// Identity is the Hypervisor object this agent registered; its UID is
// stamped into the domains it defines.
type Identity interface {
	HypervisorUID() string
}

// Config are the controller's settings.
type Config struct {
	// Node is this node's Hypervisor name.
	Node string
	// StateDir holds the per-VM files (vms/<uid>/) and the clone images
	// (cloneimage.Subdir).
	StateDir string
	// IdentityTimeout bounds the wait for a guest to acknowledge its new
	// identity; a guest without a handler never does.
	IdentityTimeout time.Duration
	// GCPeriod is how often unneeded clone images are collected.
	GCPeriod time.Duration
}

// Defaults for Config's zero values.
const (
	DefaultIdentityTimeout = 10 * time.Second
	DefaultGCPeriod        = time.Minute
)

// Deps are the controller's collaborators.
type Deps struct {
	Client versioned.Interface
	// Clones is the cluster-wide clone informer.
	Clones vesselinformers.VirtualMachineCloneInformer
	// Snapshots lists snapshots (the cluster-wide informer's lister).
	Snapshots listers.VirtualMachineSnapshotLister
	// VMs is the informer of the VMs bound to this node.
	VMs          vesselinformers.VirtualMachineInformer
	VMController VMController
	// Hypervisor runs the domains; without hypervisor.Cloner every clone
	// fails as Unsupported.
	Hypervisor hypervisor.Hypervisor
	// Locks is shared with the controllers that drive domains too.
	Locks    *boundvm.Locks
	Identity Identity
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
	// Network is the managed guest network (clones of VMs with Managed
	// interfaces get ports of their own).
	Network *network.Manager
}

// Controller makes the clones bound to one hypervisor.
type Controller struct {
	cfg      Config
	client   versioned.Interface
	clones   listers.VirtualMachineCloneLister
	byVM     cache.Indexer
	snaps    listers.VirtualMachineSnapshotLister
	vms      boundvm.Lister
	vmctl    VMController
	domains  hypervisor.Hypervisor
	hv       hypervisor.Cloner // nil when the hypervisor cannot clone
	locks    *boundvm.Locks
	identity Identity
	recorder record.EventRecorder
	network  *network.Manager
	clock    clock.PassiveClock
	queue    *worker.Queue
	// gcMu keeps image collection away from a clone being made.
	gcMu sync.RWMutex
}

const byTargetIndex = "vessel.dev/clone-target"

// New builds the controller and registers its informer handlers; start the
// informers before Run.
func New(cfg Config, deps Deps) (*Controller, error) {
	if cfg.Node == "" || cfg.StateDir == "" {
		return nil, fmt.Errorf("clone controller needs a node name and a state directory")
	}
	if cfg.IdentityTimeout <= 0 {
		cfg.IdentityTimeout = DefaultIdentityTimeout
	}
	if cfg.GCPeriod <= 0 {
		cfg.GCPeriod = DefaultGCPeriod
	}
	c := &Controller{
		cfg:      cfg,
		client:   deps.Client,
		clones:   deps.Clones.Lister(),
		byVM:     deps.Clones.Informer().GetIndexer(),
		snaps:    deps.Snapshots,
		vms:      boundvm.Lister{VMs: deps.VMs.Lister(), Node: cfg.Node},
		vmctl:    deps.VMController,
		domains:  deps.Hypervisor,
		locks:    deps.Locks,
		identity: deps.Identity,
		recorder: deps.Recorder,
		network:  deps.Network,
		clock:    deps.Clock,
		queue:    worker.NewQueue("vessel-agent-clones"),
	}
	c.hv, _ = deps.Hypervisor.(hypervisor.Cloner)
	inf := deps.Clones.Informer()
	if err := inf.AddIndexers(cache.Indexers{byTargetIndex: func(obj any) ([]string, error) {
		cl, ok := obj.(*v1alpha1.VirtualMachineClone)
		if !ok {
			return nil, nil
		}
		return []string{cl.Namespace + "/" + cl.Spec.Target.Name}, nil
	}}); err != nil {
		return nil, fmt.Errorf("add clone index: %w", err)
	}
	if _, err := inf.AddEventHandler(worker.Handler(func(obj any) {
		if cl, ok := obj.(*v1alpha1.VirtualMachineClone); ok && c.isOurs(cl) {
			c.queue.Enqueue(obj)
		}
	})); err != nil {
		return nil, fmt.Errorf("add clone event handler: %w", err)
	}
	// A clone's VM bound here unblocks the clone.
	if _, err := deps.VMs.Informer().AddEventHandler(worker.Handler(func(obj any) {
		vm, ok := obj.(*v1alpha1.VirtualMachine)
		if !ok || vm.Annotations[v1alpha1.AnnotationClone] == "" {
			return
		}
		objs, _ := c.byVM.ByIndex(byTargetIndex, boundvm.Key(vm))
		for _, obj := range objs {
			if cl := obj.(*v1alpha1.VirtualMachineClone); c.isOurs(cl) {
				c.queue.Enqueue(cl)
			}
		}
	})); err != nil {
		return nil, fmt.Errorf("add VM event handler for clones: %w", err)
	}
	return c, nil
}

// isOurs: an InProgress clone whose image this node holds.
func (c *Controller) isOurs(cl *v1alpha1.VirtualMachineClone) bool {
	return cl.Status.Phase == v1alpha1.CloneInProgress && cl.Status.NodeName == c.cfg.Node
}

// Run makes clones with workers goroutines, and collects clone images,
// until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	wg.Go(func() {
		wait.UntilWithContext(ctx, func(ctx context.Context) {
			if err := c.collectImages(ctx); err != nil {
				klog.FromContext(ctx).Error(err, "Collecting clone images failed")
			}
		}, c.cfg.GCPeriod)
	})
	c.queue.Run(ctx, workers, c.sync)
	wg.Wait()
}
