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

package quota

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	quota "k8s.io/apiserver/pkg/quota/v1"
	"k8s.io/apiserver/pkg/quota/v1/generic"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
)

// Defaults of Controller's timing.
const (
	// DefaultResync recomputes every quota this often, as
	// kube-controller-manager's quota controller does.
	DefaultResync = 5 * time.Minute
	// DefaultSettle is how long after a quota's usage last changed the
	// controller waits before it lowers it. Admission charges a quota
	// just before the object is stored: a recount made in between would
	// miss the object, and writing it would undercount.
	DefaultSettle = 10 * time.Second
)

// Controller keeps the Vessel part of every ResourceQuota's status true:
// status.hard mirrors spec.hard and status.used is recounted from the
// objects, for the resource names Vessel computes, on every change to a
// quota, VM, snapshot or restore, and every Resync. It never touches
// the other names of a quota (pods, requests.cpu, ...), which
// kube-controller-manager computes, and it lowers usage only once
// admission cannot have a charge in flight (Settle), so usage is never
// recorded below what exists.
type Controller struct {
	client     kubernetes.Interface
	quotas     corelisters.ResourceQuotaLister
	evaluators []quota.Evaluator
	registry   quota.Registry
	synced     []cache.InformerSynced
	queue      workqueue.TypedRateLimitingInterface[string]
	Resync     time.Duration
	Settle     time.Duration
	now        func() time.Time

	mu sync.Mutex
	// changed is when each quota's status.used was last seen to change.
	changed map[types.UID]time.Time
}

// New builds the controller on informers of kube-apiserver's quotas and of
// Vessel's objects; start the factories after it.
func New(client kubernetes.Interface, core kubeinformers.SharedInformerFactory, vessel informers.SharedInformerFactory) (*Controller, error) {
	quotaInformer := core.Core().V1().ResourceQuotas()
	v := vessel.Vessel().V1alpha1()
	evaluators := Evaluators(Listers{
		VirtualMachines: v.VirtualMachines().Lister(),
		Snapshots:       v.VirtualMachineSnapshots().Lister(),
		Restores:        v.VirtualMachineRestores().Lister(),
	})
	c := &Controller{
		client:     client,
		quotas:     quotaInformer.Lister(),
		evaluators: evaluators,
		registry:   generic.NewRegistry(evaluators),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "vessel-quota"}),
		Resync:  DefaultResync,
		Settle:  DefaultSettle,
		now:     time.Now,
		changed: map[types.UID]time.Time{},
	}
	if _, err := quotaInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if q, ok := obj.(*corev1.ResourceQuota); ok {
				c.sawUsage(q)
				c.queue.Add(q.Namespace)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			old, ok1 := oldObj.(*corev1.ResourceQuota)
			q, ok2 := newObj.(*corev1.ResourceQuota)
			if !ok1 || !ok2 {
				return
			}
			if !quota.Equals(old.Status.Used, q.Status.Used) {
				c.sawUsage(q)
			}
			c.queue.Add(q.Namespace)
		},
		DeleteFunc: func(obj any) {
			if q, ok := obj.(*corev1.ResourceQuota); ok {
				c.mu.Lock()
				delete(c.changed, q.UID)
				c.mu.Unlock()
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("watch resource quotas: %w", err)
	}
	// Any change to what is counted recounts its namespace.
	byNamespace := cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueNamespaceOf,
		UpdateFunc: func(_, obj any) { c.enqueueNamespaceOf(obj) },
		DeleteFunc: c.enqueueNamespaceOf,
	}
	for _, inf := range []cache.SharedIndexInformer{v.VirtualMachines().Informer(), v.VirtualMachineSnapshots().Informer(), v.VirtualMachineRestores().Informer()} {
		if _, err := inf.AddEventHandler(byNamespace); err != nil {
			return nil, fmt.Errorf("watch objects to count: %w", err)
		}
		c.synced = append(c.synced, inf.HasSynced)
	}
	c.synced = append(c.synced, quotaInformer.Informer().HasSynced)
	return c, nil
}

func (c *Controller) sawUsage(q *corev1.ResourceQuota) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changed[q.UID] = c.now()
}

func (c *Controller) enqueueNamespaceOf(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if o, ok := obj.(metav1.Object); ok {
		c.queue.Add(o.GetNamespace())
	}
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	if !cache.WaitForNamedCacheSyncWithContext(ctx, c.synced...) {
		return
	}
	go wait.UntilWithContext(ctx, c.resyncAll, c.Resync)
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		for c.processNext(ctx) {
		}
	}, time.Second)
	<-ctx.Done()
}

func (c *Controller) resyncAll(context.Context) {
	quotas, err := c.quotas.List(labels.Everything())
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	for _, q := range quotas {
		c.queue.Add(q.Namespace)
	}
}

func (c *Controller) processNext(ctx context.Context) bool {
	namespace, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(namespace)
	retry, err := c.sync(ctx, namespace)
	switch {
	case err != nil:
		klog.FromContext(ctx).Error(err, "Recounting Vessel quota usage failed, will retry", "namespace", namespace)
		c.queue.AddRateLimited(namespace)
	case retry > 0:
		c.queue.Forget(namespace)
		c.queue.AddAfter(namespace, retry)
	default:
		c.queue.Forget(namespace)
	}
	return true
}

// sync recounts the quotas of a namespace. It returns how soon to look
// again when a lower count must wait for admission to settle.
func (c *Controller) sync(ctx context.Context, namespace string) (time.Duration, error) {
	quotas, err := c.quotas.ResourceQuotas(namespace).List(labels.Everything())
	if err != nil {
		return 0, err
	}
	var retry time.Duration
	var errs []error
	for _, q := range quotas {
		wait, err := c.syncQuota(ctx, q)
		if err != nil {
			errs = append(errs, err)
		}
		if wait > 0 && (retry == 0 || wait < retry) {
			retry = wait
		}
	}
	if len(errs) > 0 {
		return 0, fmt.Errorf("%v", errs)
	}
	return retry, nil
}

func (c *Controller) syncQuota(ctx context.Context, q *corev1.ResourceQuota) (time.Duration, error) {
	if len(q.Spec.Scopes) > 0 || q.Spec.ScopeSelector != nil {
		return 0, nil // scopes select pods; Vessel's evaluators match none
	}
	owned := Owned(quota.ResourceNames(q.Spec.Hard), c.evaluators)
	stale := Owned(append(quota.ResourceNames(q.Status.Hard), quota.ResourceNames(q.Status.Used)...), c.evaluators)
	if len(owned) == 0 && len(stale) == 0 {
		return 0, nil
	}
	used, err := quota.CalculateUsage(q.Namespace, nil, quota.Mask(q.Spec.Hard, owned), c.registry, nil)
	if err != nil {
		return 0, fmt.Errorf("count usage for quota %s/%s: %w", q.Namespace, q.Name, err)
	}
	status := corev1.ResourceQuotaStatus{Hard: corev1.ResourceList{}, Used: corev1.ResourceList{}}
	for name, v := range q.Status.Hard {
		if !quota.Contains(stale, name) {
			status.Hard[name] = v
		}
	}
	for name, v := range q.Status.Used {
		if !quota.Contains(stale, name) {
			status.Used[name] = v
		}
	}
	var lowers bool
	for _, name := range owned {
		status.Hard[name] = q.Spec.Hard[name]
		now := used[name]
		if before, ok := q.Status.Used[name]; ok && now.Cmp(before) < 0 {
			lowers = true
		}
		status.Used[name] = now
	}
	if quota.Equals(status.Hard, q.Status.Hard) && quota.Equals(status.Used, q.Status.Used) {
		return 0, nil
	}
	if lowers {
		c.mu.Lock()
		since := c.now().Sub(c.changed[q.UID])
		c.mu.Unlock()
		if since < c.Settle {
			return c.Settle - since, nil
		}
	}
	updated := q.DeepCopy()
	updated.Status = status
	_, err = c.client.CoreV1().ResourceQuotas(q.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	switch {
	case apierrors.IsConflict(err):
		return time.Millisecond, nil // the informer brings the newer quota
	case apierrors.IsNotFound(err):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("update status of quota %s/%s: %w", q.Namespace, q.Name, err)
	}
	return 0, nil
}
