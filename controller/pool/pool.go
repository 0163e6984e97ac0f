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

// Package pool is the vessel-apiserver's VirtualMachinePool controller: it
// keeps spec.replicas VMs handed out (label vessel.dev/pool-member=replica)
// and, for a warm pool, spec.warm.ready paused memory clones of the warm
// snapshot besides them (pool-member=warm). Scaling up hands out ready warm
// clones first: it relabels them and unpauses them, which takes as long as
// resuming a guest; then warm clones still being made; then new clones (or,
// without warm, new VMs booted from the template). The warm clones taken
// are made again. Scaling down deletes VMs that do not run first, then the
// newest. Every VM and clone the pool makes is owned by it, so deleting the
// pool deletes them (garbage collector).
package pool

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

// maxInFlight bounds the clones or VMs a pool makes at once, so a pool
// whose clones keep failing does not flood the API.
const maxInFlight = 5

// Controller keeps pools at their size.
type Controller struct {
	client versioned.Interface
	pools  listers.VirtualMachinePoolLister
	vms    listers.VirtualMachineLister
	clones listers.VirtualMachineCloneLister
	snaps  listers.VirtualMachineSnapshotLister
	synced []cache.InformerSynced
	queue  workqueue.TypedRateLimitingInterface[string]
	now    func() time.Time
	// expected are writes the caches do not show yet.
	expected expectations
}

// New wires a controller to the shared informers; call Run after starting them.
func New(client versioned.Interface, factory informers.SharedInformerFactory) (*Controller, error) {
	v := factory.Vessel().V1alpha1()
	c := &Controller{
		client: client,
		pools:  v.VirtualMachinePools().Lister(),
		vms:    v.VirtualMachines().Lister(),
		clones: v.VirtualMachineClones().Lister(),
		snaps:  v.VirtualMachineSnapshots().Lister(),
		now:    time.Now,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "vessel-pools"}),
	}
	c.synced = []cache.InformerSynced{
		v.VirtualMachinePools().Informer().HasSynced, v.VirtualMachines().Informer().HasSynced,
		v.VirtualMachineClones().Informer().HasSynced, v.VirtualMachineSnapshots().Informer().HasSynced,
	}
	enqueuePool := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	// A member's or a clone's change concerns its pool.
	enqueueOwner := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		o, ok := obj.(metav1.Object)
		if !ok {
			return
		}
		if ref := metav1.GetControllerOf(o); ref != nil && ref.Kind == "VirtualMachinePool" {
			c.queue.Add(o.GetNamespace() + "/" + ref.Name)
		}
	}
	handlers := []struct {
		inf cache.SharedIndexInformer
		f   func(any)
	}{
		{v.VirtualMachinePools().Informer(), enqueuePool},
		{v.VirtualMachines().Informer(), enqueueOwner},
		{v.VirtualMachineClones().Informer(), enqueueOwner},
	}
	for _, h := range handlers {
		f := h.f
		if _, err := h.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: f, UpdateFunc: func(_, obj any) { f(obj) }, DeleteFunc: f,
		}); err != nil {
			return nil, fmt.Errorf("watch for pools: %w", err)
		}
	}
	// A warm pool's snapshot becoming ready (or going) concerns it.
	if _, err := v.VirtualMachineSnapshots().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) { c.enqueueWarmPoolsOf(obj) }, DeleteFunc: c.enqueueWarmPoolsOf,
	}); err != nil {
		return nil, fmt.Errorf("watch snapshots for pools: %w", err)
	}
	return c, nil
}

func (c *Controller) enqueueWarmPoolsOf(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	s, ok := obj.(*v1alpha1.VirtualMachineSnapshot)
	if !ok {
		return
	}
	pools, _ := c.pools.VirtualMachinePools(s.Namespace).List(labels.Everything())
	for _, p := range pools {
		if p.Spec.Warm != nil && p.Spec.Warm.SnapshotName == s.Name {
			c.queue.Add(p.Namespace + "/" + p.Name)
		}
	}
}

// Run works until ctx is done.
func (c *Controller) Run(ctx context.Context) {
	defer utilruntime.HandleCrashWithContext(ctx)
	defer c.queue.ShutDown()
	if !cache.WaitForNamedCacheSyncWithContext(ctx, c.synced...) {
		return
	}
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		for c.next(ctx) {
		}
	}, time.Second)
	<-ctx.Done()
}

func (c *Controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.sync(ctx, key); err != nil {
		klog.FromContext(ctx).Error(err, "Syncing pool", "pool", key)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pool, err := c.pools.VirtualMachinePools(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.expected.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	if pool.DeletionTimestamp != nil {
		return nil // the garbage collector deletes its VMs and clones
	}
	m, err := c.members(pool)
	if err != nil {
		return err
	}
	problem := c.reconcile(ctx, pool, m)
	// Counted again: reconcile changed members.
	if m, err = c.members(pool); err != nil {
		return err
	}
	return c.writeStatus(ctx, pool, m, problem)
}

func ownedBy(o metav1.Object, pool *v1alpha1.VirtualMachinePool) bool {
	ref := metav1.GetControllerOf(o)
	return ref != nil && ref.UID == pool.UID
}
