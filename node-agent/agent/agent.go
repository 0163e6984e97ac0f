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

// Package agent is the Vessel node agent's reconciler: it registers and
// heartbeats the node's Hypervisor, watches the VMs bound to it and makes
// libvirt match them, KubeVirt virt-handler style. Informer events, libvirt
// lifecycle events and a periodic resync only enqueue VM keys; sync reads
// the VM and its domain, decides, takes one action and rewrites status.
package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	corev1 "k8s.io/api/core/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/generated/clientset/versioned/scheme"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/disks"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// Config is what an agent needs; cmd/vessel-agent fills it from flags.
type Config struct {
	// Client reaches the vessel.dev API.
	Client versioned.Interface
	// Events, when set, reaches kube-apiserver's core API for Events.
	Events kubernetes.Interface
	// Hypervisor runs the domains.
	Hypervisor hypervisor.Hypervisor
	// KVM says guests may use hardware acceleration (from ProbeKVM).
	KVM bool

	// HypervisorName names this node's Hypervisor object.
	HypervisorName string
	// Labels are put on the Hypervisor, for VM nodeSelectors.
	Labels map[string]string
	// StateDir holds the image cache (images/) and per-VM files (vms/<uid>/).
	StateDir string
	// AllowedHostPathRoots are the shared hostPath roots: VMs may read
	// files under them, never write.
	AllowedHostPathRoots []string
	// WritableHostPathRoots are hostPath roots divided per namespace: a VM
	// may use files under <root>/<its namespace>/ only.
	WritableHostPathRoots []string
	// Capacity of the host; zero fields are read from /proc.
	Capacity v1alpha1.HypervisorResources
	// Reserved is subtracted from capacity to get allocatable.
	ReservedCPUs   int32
	ReservedMemory resource.Quantity
	// CPUAllocationRatio is how many vCPUs each host CPU left after the
	// reserve may back: guests rarely keep every vCPU busy, so hypervisors
	// overcommit CPU (OpenStack's default is 16). Zero means 1.
	CPUAllocationRatio int32
	// MaxVMs is the number of VMs the node accepts.
	MaxVMs int32
	// DaemonEndpoint is published in the Hypervisor status (console streams).
	DaemonEndpoint string
	// AgentVersion is published in the Hypervisor status.
	AgentVersion string

	HeartbeatInterval time.Duration
	ResyncPeriod      time.Duration
	Workers           int
	// ACPIInterval is how often a shutdown request is repeated while a
	// guest ignores it.
	ACPIInterval time.Duration
	// Images bounds image downloads (egress, size, time) and the image
	// cache's size; the agent sets its Dir, OverlayDir and InUse.
	Images disks.CacheConfig
}

// Defaults for Config's zero values.
const (
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultResyncPeriod      = 30 * time.Second
	DefaultWorkers           = 4
	DefaultACPIInterval      = 3 * time.Second
	DefaultMaxVMs            = 64
	// DefaultCPUAllocationRatio overcommits vCPUs 8:1, half of OpenStack's default.
	DefaultCPUAllocationRatio = 8
)

// Agent reconciles the VMs bound to one Hypervisor.
type Agent struct {
	cfg      Config
	baseCtx  context.Context
	hv       hypervisor.Hypervisor
	client   versioned.Interface
	lister   listers.VirtualMachineLister
	indexer  cache.Indexer
	synced   cache.InformerSynced
	factory  informers.SharedInformerFactory
	queue    workqueue.TypedRateLimitingInterface[string]
	images   *disks.Cache
	recorder record.EventRecorder
	now      func() time.Time
	// snapshots reconciles snapshots and restores (snapshot.go).
	snapshots *snapshotWorkers

	mu       sync.Mutex
	runtimes map[string]*vmRuntime // by namespace/name
}

const uidIndex = "uid"

// New builds an agent. Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Client == nil || cfg.Hypervisor == nil {
		return nil, fmt.Errorf("agent needs a vessel client and a hypervisor")
	}
	if cfg.HypervisorName == "" {
		return nil, fmt.Errorf("agent needs a hypervisor name")
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("agent needs a state directory")
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.ResyncPeriod <= 0 {
		cfg.ResyncPeriod = DefaultResyncPeriod
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.ACPIInterval <= 0 {
		cfg.ACPIInterval = DefaultACPIInterval
	}
	if cfg.MaxVMs <= 0 {
		cfg.MaxVMs = DefaultMaxVMs
	}
	a := &Agent{
		cfg:      cfg,
		hv:       cfg.Hypervisor,
		client:   cfg.Client,
		now:      time.Now,
		runtimes: map[string]*vmRuntime{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "vessel-agent"}),
	}
	a.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.HypervisorName).String()
		}))
	vms := a.factory.Vessel().V1alpha1().VirtualMachines()
	inf := vms.Informer()
	if err := inf.AddIndexers(cache.Indexers{uidIndex: func(obj any) ([]string, error) {
		vm, ok := obj.(*v1alpha1.VirtualMachine)
		if !ok {
			return nil, nil
		}
		return []string{string(vm.UID)}, nil
	}}); err != nil {
		return nil, fmt.Errorf("add uid index: %w", err)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    a.enqueueObj,
		UpdateFunc: func(_, obj any) { a.enqueueObj(obj) },
		DeleteFunc: a.enqueueObj,
	}); err != nil {
		return nil, fmt.Errorf("add event handler: %w", err)
	}
	a.lister = vms.Lister()
	a.indexer = inf.GetIndexer()
	a.synced = inf.HasSynced
	if err := a.initSnapshots(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Agent) enqueueObj(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	a.queue.Add(key)
}

func (a *Agent) vmDir(uid string) string { return filepath.Join(a.cfg.StateDir, "vms", uid) }

// Run reconciles until ctx ends. It returns once the workers have stopped;
// guests keep running.
func (a *Agent) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("hypervisor", a.cfg.HypervisorName)
	ctx = klog.NewContext(ctx, logger)
	defer utilruntime.HandleCrash()
	defer a.queue.ShutDown()

	a.baseCtx = ctx
	a.images = disks.NewCache(ctx, a.imageCacheConfig())
	if a.cfg.Events != nil {
		b := record.NewBroadcaster(record.WithContext(ctx))
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.cfg.Events.CoreV1().Events("")})
		defer b.Shutdown()
		a.recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "vessel-agent", Host: a.cfg.HypervisorName})
	}

	if err := a.register(ctx); err != nil {
		return err
	}
	a.factory.Start(ctx.Done())
	defer a.factory.Shutdown()
	if !cache.WaitForNamedCacheSyncWithContext(ctx, a.synced) {
		return fmt.Errorf("VM informer did not sync")
	}
	if err := a.snapshots.start(ctx); err != nil {
		return err
	}
	logger.Info("Node agent started", "kvm", a.cfg.KVM, "stateDir", a.cfg.StateDir)

	var wg sync.WaitGroup
	for i := 0; i < a.cfg.Workers; i++ {
		wg.Go(func() { wait.UntilWithContext(ctx, a.worker, time.Second) })
	}
	wg.Go(func() { wait.UntilWithContext(ctx, a.heartbeat, a.cfg.HeartbeatInterval) })
	wg.Go(func() { wait.UntilWithContext(ctx, a.resync, a.cfg.ResyncPeriod) })
	wg.Go(func() { a.watchDomains(ctx) })
	wg.Go(func() { a.snapshots.run(ctx) })
	<-ctx.Done()
	a.queue.ShutDown()
	wg.Wait()
	return nil
}

// resync enqueues every VM and cleans up orphaned domains.
func (a *Agent) resync(ctx context.Context) {
	a.enqueueAll()
	if err := a.collectOrphans(ctx); err != nil {
		klog.FromContext(ctx).Error(err, "Cleaning up orphaned domains failed")
	}
}

func (a *Agent) enqueueAll() {
	for _, key := range a.indexer.ListKeys() {
		a.queue.Add(key)
	}
}

// watchDomains turns libvirt lifecycle events into VM keys.
func (a *Agent) watchDomains(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-a.hv.Events():
			if ev.UUID == "" {
				// (Re)connected: anything may have changed meanwhile.
				a.resync(ctx)
				continue
			}
			objs, err := a.indexer.ByIndex(uidIndex, ev.UUID)
			if err != nil || len(objs) == 0 {
				continue // not ours, or an orphan the resync collects
			}
			a.enqueueObj(objs[0])
		}
	}
}

func (a *Agent) worker(ctx context.Context) {
	for a.processNext(ctx) {
	}
}

func (a *Agent) processNext(ctx context.Context) bool {
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	requeue, err := a.sync(ctx, key)
	switch {
	case err != nil:
		klog.FromContext(ctx).Error(err, "Sync failed, will retry", "vm", key)
		a.queue.AddRateLimited(key)
	case requeue > 0:
		a.queue.Forget(key)
		a.queue.AddAfter(key, requeue)
	default:
		a.queue.Forget(key)
	}
	return true
}

// event records a Kubernetes Event when an events client is configured.
func (a *Agent) event(vm *v1alpha1.VirtualMachine, typ, reason, format string, args ...any) {
	if a.recorder == nil {
		return
	}
	a.recorder.Eventf(vm, typ, reason, format, args...)
}
