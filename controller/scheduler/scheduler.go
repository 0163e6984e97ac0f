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

package scheduler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/controller/vmindex"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

// Scheduler binds pending VMs. Placement is serialized (mu): a VM is
// assumed on its hypervisor before its binding is written, so two VMs never
// both count the same free room; the binding writes, the slow part, run on
// several workers at once.
type Scheduler struct {
	client      versioned.Interface
	vms         listers.VirtualMachineLister
	hypervisors listers.HypervisorLister
	// byNode indexes VMs by spec.nodeName: what a hypervisor has bound.
	byNode cache.Indexer
	synced []cache.InformerSynced
	queue  workqueue.TypedRateLimitingInterface[string]

	mu sync.Mutex
	// assumed holds bindings being written or made but not yet seen by
	// the informer.
	assumed map[types.UID]assumedBinding
	// unschedulable are the VMs whose last attempt found no room.
	unschedulable map[string]bool
}

// DefaultWorkers is how many bindings are written at once.
const DefaultWorkers = 8

// assumedBinding is a binding the informer has not delivered yet.
type assumedBinding struct {
	key  string
	node string
	vm   *v1alpha1.VirtualMachine
}

// New wires a scheduler to the shared informers; call Run after starting them.
func New(client versioned.Interface, factory informers.SharedInformerFactory) (*Scheduler, error) {
	vmInformer := factory.Vessel().V1alpha1().VirtualMachines()
	hvInformer := factory.Vessel().V1alpha1().Hypervisors()
	s := &Scheduler{
		client:      client,
		vms:         vmInformer.Lister(),
		hypervisors: hvInformer.Lister(),
		synced:      []cache.InformerSynced{vmInformer.Informer().HasSynced, hvInformer.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "vessel-scheduler"}),
		assumed:       map[types.UID]assumedBinding{},
		unschedulable: map[string]bool{},
	}
	register()
	if err := vmindex.AddByNode(vmInformer.Informer()); err != nil {
		return nil, err
	}
	s.byNode = vmInformer.Informer().GetIndexer()
	_, err := vmInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.enqueueVM,
		UpdateFunc: func(_, obj any) { s.enqueueVM(obj) },
		// A deleted bound VM frees room: pending VMs may fit now.
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if vm, ok := obj.(*v1alpha1.VirtualMachine); !ok || vm.Spec.NodeName != "" {
				s.enqueuePending()
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watch VMs: %w", err)
	}
	_, err = hvInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.enqueuePending() },
		// Heartbeats update every hypervisor every few seconds; only a
		// change in what scheduling looks at retries the pending VMs.
		UpdateFunc: func(oldObj, newObj any) {
			if schedulingChanged(oldObj.(*v1alpha1.Hypervisor), newObj.(*v1alpha1.Hypervisor)) {
				s.enqueuePending()
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watch hypervisors: %w", err)
	}
	return s, nil
}

func (s *Scheduler) enqueueVM(obj any) {
	vm, ok := obj.(*v1alpha1.VirtualMachine)
	if !ok || vm.Spec.NodeName != "" || vm.DeletionTimestamp != nil {
		return
	}
	if key, err := cache.MetaNamespaceKeyFunc(vm); err == nil {
		s.queue.Add(key)
	}
}

func (s *Scheduler) enqueuePending() {
	vms, err := s.vms.List(labels.Everything())
	if err != nil {
		return
	}
	for _, vm := range vms {
		s.enqueueVM(vm)
	}
}

// Run binds VMs with DefaultWorkers until ctx is done.
func (s *Scheduler) Run(ctx context.Context) { s.RunWorkers(ctx, DefaultWorkers) }

// RunWorkers binds VMs, writing up to workers bindings at once, until ctx
// is done.
func (s *Scheduler) RunWorkers(ctx context.Context, workers int) {
	defer utilruntime.HandleCrash()
	defer s.queue.ShutDown()
	if !cache.WaitForNamedCacheSyncWithContext(ctx, s.synced...) {
		return
	}
	klog.FromContext(ctx).Info("Scheduler started", "workers", workers)
	for range max(workers, 1) {
		go wait.UntilWithContext(ctx, s.worker, time.Second)
	}
	go wait.UntilWithContext(ctx, func(context.Context) { queueDepth.Set(float64(s.queue.Len())) }, time.Second)
	// Pending VMs are retried now and then: heartbeats going stale do not
	// always come with an event.
	go wait.UntilWithContext(ctx, func(context.Context) { s.enqueuePending() }, 30*time.Second)
	<-ctx.Done()
}

func (s *Scheduler) worker(ctx context.Context) {
	for s.next(ctx) {
	}
}

func (s *Scheduler) next(ctx context.Context) bool {
	key, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(key)
	queueDepth.Set(float64(s.queue.Len()))
	begin := time.Now()
	result, err := s.schedule(ctx, key)
	s.setUnschedulable(key, result == resultUnschedulable)
	if result != "" {
		attempts.WithLabelValues(result).Inc()
		attemptDuration.WithLabelValues(result).Observe(time.Since(begin).Seconds())
	}
	if err != nil {
		if result != resultUnschedulable {
			klog.FromContext(ctx).Error(err, "Scheduling failed, will retry", "vm", key)
		}
		s.queue.AddRateLimited(key)
		return true
	}
	s.queue.Forget(key)
	return true
}

// setUnschedulable records whether key's last attempt found no room.
func (s *Scheduler) setUnschedulable(key string, unschedulable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if unschedulable {
		s.unschedulable[key] = true
	} else {
		delete(s.unschedulable, key)
	}
	unschedulableVMs.Set(float64(len(s.unschedulable)))
}

// errUnschedulable means the VM waits for room; it is retried with backoff.
type errUnschedulable struct{ msg string }

func (e errUnschedulable) Error() string { return e.msg }

// schedule places and binds the VM key names. Its result is what the
// attempt came to (resultBound, resultUnschedulable, resultError), or ""
// when there was nothing to do.
func (s *Scheduler) schedule(ctx context.Context, key string) (string, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return "", nil
	}
	vm, err := s.vms.VirtualMachines(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return resultError, err
	}
	if vm.Spec.NodeName != "" || vm.DeletionTimestamp != nil {
		return "", nil
	}
	target, reason, err := s.place(vm, key)
	if err != nil {
		return resultError, err
	}
	if target == "" && reason == "" {
		return "", nil // being bound by another worker
	}
	if target == "" {
		if err := s.markUnschedulable(ctx, vm, reason); err != nil {
			return resultError, err
		}
		return resultUnschedulable, errUnschedulable{reason}
	}
	binding := &v1alpha1.VirtualMachineBinding{
		ObjectMeta: metav1.ObjectMeta{Name: vm.Name, Namespace: vm.Namespace, UID: vm.UID},
		Target:     target,
	}
	if _, err := s.client.VesselV1alpha1().VirtualMachines(ns).Bind(ctx, vm.Name, binding, metav1.CreateOptions{}); err != nil {
		s.forget(vm.UID)
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return "", nil // bound or deleted meanwhile: the informer will tell
		}
		bindingErrors.Inc()
		return resultError, fmt.Errorf("bind %s to %s: %w", key, target, err)
	}
	pendingDuration.Observe(time.Since(vm.CreationTimestamp.Time).Seconds())
	klog.FromContext(ctx).V(2).Info("Bound VM", "vm", key, "hypervisor", target)
	return resultBound, nil
}

// place picks vm's hypervisor and assumes the VM there, or returns "" and
// why nothing fits; ("", "") when the VM is assumed already (another
// worker is binding it).
func (s *Scheduler) place(vm *v1alpha1.VirtualMachine, key string) (target, reason string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, assumed := s.assumed[vm.UID]; assumed {
		return "", "", nil
	}
	hypervisors, err := s.hypervisors.List(labels.Everything())
	if err != nil {
		return "", "", err
	}
	used, err := s.usage(hypervisors)
	if err != nil {
		return "", "", err
	}
	target, reason = pick(vm, hypervisors, used)
	if target != "" {
		s.assumed[vm.UID] = assumedBinding{key: key, node: target, vm: vm}
	}
	return target, reason, nil
}

// forget drops the assumption of a binding that was not written.
func (s *Scheduler) forget(uid types.UID) {
	s.mu.Lock()
	delete(s.assumed, uid)
	s.mu.Unlock()
}

// usage sums what the VMs bound to each hypervisor ask for, from the node
// index (cost: the VMs on those hypervisors, not all VMs), counting
// bindings the informer has not delivered yet. s.mu is held.
func (s *Scheduler) usage(hypervisors []*v1alpha1.Hypervisor) (map[string]*usage, error) {
	used := map[string]*usage{}
	for _, hv := range hypervisors {
		bound, err := s.byNode.ByIndex(vmindex.ByNode, hv.Name)
		if err != nil {
			return nil, err
		}
		u := &usage{}
		for _, obj := range bound {
			u.add(obj.(*v1alpha1.VirtualMachine))
		}
		used[hv.Name] = u
	}
	for uid, a := range s.assumed {
		ns, name, _ := cache.SplitMetaNamespaceKey(a.key)
		vm, err := s.vms.VirtualMachines(ns).Get(name)
		if err != nil || vm.UID != uid || vm.Spec.NodeName != "" {
			delete(s.assumed, uid) // gone, or now counted through the index
			continue
		}
		if u := used[a.node]; u != nil {
			u.add(a.vm)
		}
	}
	return used, nil
}

// schedulingChanged is true when a hypervisor update matters to placement.
func schedulingChanged(old, cur *v1alpha1.Hypervisor) bool {
	return ready(old) != ready(cur) ||
		old.Spec.Unschedulable != cur.Spec.Unschedulable ||
		!equality.Semantic.DeepEqual(old.Labels, cur.Labels) ||
		!equality.Semantic.DeepEqual(old.Status.Allocatable, cur.Status.Allocatable)
}

func (s *Scheduler) markUnschedulable(ctx context.Context, vm *v1alpha1.VirtualMachine, reason string) error {
	cond := unschedulableCondition(vm, reason)
	if existing := meta.FindStatusCondition(vm.Status.Conditions, cond.Type); existing != nil &&
		existing.Status == cond.Status && existing.Message == cond.Message {
		return nil
	}
	vm = vm.DeepCopy()
	meta.SetStatusCondition(&vm.Status.Conditions, cond)
	_, err := s.client.VesselV1alpha1().VirtualMachines(vm.Namespace).UpdateStatus(ctx, vm, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
