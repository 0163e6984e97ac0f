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

// Package clone is the vessel-apiserver's clone controller. For a new
// VirtualMachineClone it finds the hypervisor that holds the source (the
// source VM's, or the one holding the snapshot's data), creates the new
// VirtualMachine through the API (so quota and admission apply as to any
// VM) with a nodeSelector on that hypervisor, and hands the clone to that
// hypervisor's agent (phase InProgress), which makes the VM's disks and
// domain. It fails clones no agent can make: a source that cannot be
// cloned, a new VM the hypervisor has no room for, an agent that is down;
// and it deletes the VM of a failed clone.
package clone

import (
	"context"
	"fmt"
	"maps"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	snapshotcontroller "github.com/vessel-vm/vessel/controller/snapshot"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

// Defaults of a Controller.
const (
	// DefaultAgentTimeout is how long a clone may wait for an agent that
	// is not ready before it fails.
	DefaultAgentTimeout = 30 * time.Second
	// checkInProgress is how often an InProgress clone is looked at.
	checkInProgress = 5 * time.Second
)

// Controller starts clones and fails those no agent can make.
type Controller struct {
	client      versioned.Interface
	clones      listers.VirtualMachineCloneLister
	byTarget    cache.Indexer
	vms         listers.VirtualMachineLister
	snaps       listers.VirtualMachineSnapshotLister
	hypervisors listers.HypervisorLister
	synced      []cache.InformerSynced
	queue       workqueue.TypedRateLimitingInterface[string]

	// AgentTimeout is how long an InProgress clone waits for an agent
	// that is not ready.
	AgentTimeout time.Duration
	now          func() time.Time
}

const byTargetIndex = "vessel.dev/clone-target"

// New wires a controller to the shared informers; call Run after starting them.
func New(client versioned.Interface, factory informers.SharedInformerFactory) (*Controller, error) {
	v := factory.Vessel().V1alpha1()
	c := &Controller{
		client:       client,
		clones:       v.VirtualMachineClones().Lister(),
		byTarget:     v.VirtualMachineClones().Informer().GetIndexer(),
		vms:          v.VirtualMachines().Lister(),
		snaps:        v.VirtualMachineSnapshots().Lister(),
		hypervisors:  v.Hypervisors().Lister(),
		AgentTimeout: DefaultAgentTimeout,
		now:          time.Now,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "vessel-clones"}),
	}
	c.synced = []cache.InformerSynced{
		v.VirtualMachineClones().Informer().HasSynced, v.VirtualMachines().Informer().HasSynced,
		v.VirtualMachineSnapshots().Informer().HasSynced, v.Hypervisors().Informer().HasSynced,
	}
	inf := v.VirtualMachineClones().Informer()
	if err := inf.AddIndexers(cache.Indexers{byTargetIndex: func(obj any) ([]string, error) {
		if cl, ok := obj.(*v1alpha1.VirtualMachineClone); ok {
			return []string{cl.Namespace + "/" + cl.Spec.Target.Name}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("index clones: %w", err)
	}
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return nil, fmt.Errorf("watch clones: %w", err)
	}
	// A clone's VM being scheduled (or not), or deleted, moves the clone.
	onVM := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		vm, ok := obj.(*v1alpha1.VirtualMachine)
		if !ok || vm.Annotations[v1alpha1.AnnotationClone] == "" {
			return
		}
		objs, _ := c.byTarget.ByIndex(byTargetIndex, vm.Namespace+"/"+vm.Name)
		for _, o := range objs {
			enqueue(o)
		}
	}
	if _, err := v.VirtualMachines().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onVM, UpdateFunc: func(_, obj any) { onVM(obj) }, DeleteFunc: onVM,
	}); err != nil {
		return nil, fmt.Errorf("watch VMs for clones: %w", err)
	}
	return c, nil
}

// Run works until ctx is done.
func (c *Controller) Run(ctx context.Context) {
	defer utilruntime.HandleCrashWithContext(ctx)
	defer c.queue.ShutDown()
	if !cache.WaitForNamedCacheSyncWithContext(ctx, c.synced...) {
		return
	}
	go wait.UntilWithContext(ctx, func(context.Context) {
		for {
			key, quit := c.queue.Get()
			if quit {
				return
			}
			requeue, err := c.sync(ctx, key)
			switch {
			case err != nil:
				klog.FromContext(ctx).Error(err, "Syncing clone", "clone", key)
				c.queue.AddRateLimited(key)
			case requeue > 0:
				c.queue.Forget(key)
				c.queue.AddAfter(key, requeue)
			default:
				c.queue.Forget(key)
			}
			c.queue.Done(key)
		}
	}, time.Second)
	<-ctx.Done()
}

func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.clones.VirtualMachineClones(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	cl := cached.DeepCopy()
	if cl.DeletionTimestamp != nil {
		return 0, nil
	}
	switch cl.Status.Phase {
	case "", v1alpha1.ClonePending:
		return 0, c.start(ctx, cl)
	case v1alpha1.CloneInProgress:
		return c.watch(ctx, cl)
	case v1alpha1.CloneFailed:
		return 0, c.deleteTarget(ctx, cl)
	}
	return 0, nil
}

// failure ends a clone as Failed.
type failure struct{ reason, msg string }

func (f failure) Error() string { return f.msg }

// start creates the clone's VM and hands the clone to the agent of the
// hypervisor holding its source.
func (c *Controller) start(ctx context.Context, cl *v1alpha1.VirtualMachineClone) error {
	source, node, f := c.source(cl)
	if f != nil {
		return c.fail(ctx, cl, *f)
	}
	vm, f, err := c.createTarget(ctx, cl, source, node)
	if err != nil {
		return err
	}
	if f != nil {
		return c.fail(ctx, cl, *f)
	}
	now := metav1.NewTime(c.now())
	cl.Status.Phase = v1alpha1.CloneInProgress
	cl.Status.VirtualMachineName, cl.Status.VirtualMachineUID = vm.Name, string(vm.UID)
	cl.Status.SourceVirtualMachineUID = string(source.UID)
	cl.Status.NodeName = node
	cl.Status.StartTime = &now
	c.setCondition(cl, metav1.ConditionFalse, "InProgress", fmt.Sprintf("VM %s is being made on hypervisor %s", vm.Name, node))
	return c.writeStatus(ctx, cl)
}

// source is the VM the clone copies and the hypervisor holding what it is
// copied from.
func (c *Controller) source(cl *v1alpha1.VirtualMachineClone) (*v1alpha1.VirtualMachine, string, *failure) {
	memory := cl.Spec.Memory == nil || *cl.Spec.Memory
	vmName, wantUID, node := cl.Spec.Source.VirtualMachineName, "", ""
	if s := cl.Spec.Source.SnapshotName; s != "" {
		snap, err := c.snaps.VirtualMachineSnapshots(cl.Namespace).Get(s)
		switch {
		case apierrors.IsNotFound(err):
			return nil, "", &failure{"SnapshotNotFound", fmt.Sprintf("snapshot %s does not exist", s)}
		case err != nil:
			return nil, "", &failure{"SnapshotNotFound", err.Error()}
		case snap.DeletionTimestamp != nil:
			return nil, "", &failure{"SnapshotDeleting", fmt.Sprintf("snapshot %s is being deleted", s)}
		case !snap.Status.ReadyToUse:
			return nil, "", &failure{"SnapshotNotReady", fmt.Sprintf("snapshot %s is not ready to use (phase %s)", s, snap.Status.Phase)}
		case memory && !snap.Status.MemoryIncluded:
			return nil, "", &failure{"SnapshotWithoutMemory", fmt.Sprintf("snapshot %s holds no memory: clone it with memory: false", s)}
		}
		vmName, wantUID, node = snap.Spec.VirtualMachineName, snap.Status.VirtualMachineUID, snap.Status.NodeName
	}
	vm, err := c.vms.VirtualMachines(cl.Namespace).Get(vmName)
	switch {
	case apierrors.IsNotFound(err):
		return nil, "", &failure{"SourceNotFound", fmt.Sprintf("VM %s does not exist", vmName)}
	case err != nil:
		return nil, "", &failure{"SourceNotFound", err.Error()}
	case wantUID != "" && string(vm.UID) != wantUID:
		return nil, "", &failure{"SourceNotFound", fmt.Sprintf("the VM snapshot %s was taken of was deleted (VM %s is a newer one)", cl.Spec.Source.SnapshotName, vmName)}
	case vm.DeletionTimestamp != nil:
		return nil, "", &failure{"SourceDeleting", fmt.Sprintf("VM %s is being deleted", vmName)}
	}
	if node == "" {
		node = vm.Spec.NodeName
	}
	if node == "" {
		return nil, "", &failure{"SourceNotBound", fmt.Sprintf("VM %s is not bound to a hypervisor: it has no disks or memory to clone yet", vmName)}
	}
	for _, d := range vm.Spec.Disks {
		if d.HostPath != nil && !d.ReadOnly {
			return nil, "", &failure{"UnsupportedDisk", fmt.Sprintf("VM %s's disk %s is a writable hostPath file, which a clone cannot share or copy", vmName, d.Name)}
		}
	}
	return vm, node, nil
}

// createTarget creates the clone's VM: the source's spec, with nothing of
// its identity (MAC addresses are generated from the new UID), pinned to
// the hypervisor holding the source.
func (c *Controller) createTarget(ctx context.Context, cl *v1alpha1.VirtualMachineClone, source *v1alpha1.VirtualMachine, node string) (*v1alpha1.VirtualMachine, *failure, error) {
	vms := c.client.VesselV1alpha1().VirtualMachines(cl.Namespace)
	if existing, err := vms.Get(ctx, cl.Spec.Target.Name, metav1.GetOptions{}); err == nil {
		if existing.Annotations[v1alpha1.AnnotationClone] == string(cl.UID) {
			return existing, nil, nil // created before a lost status write
		}
		return nil, &failure{"TargetExists", fmt.Sprintf("VM %s already exists", cl.Spec.Target.Name)}, nil
	} else if !apierrors.IsNotFound(err) {
		return nil, nil, err
	}
	vm := &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{
			Name:            cl.Spec.Target.Name,
			Namespace:       cl.Namespace,
			Labels:          maps.Clone(cl.Spec.Target.Labels),
			Annotations:     maps.Clone(cl.Spec.Target.Annotations),
			OwnerReferences: cl.OwnerReferences,
		},
		Spec: *TargetSpec(&source.Spec, node, cl.Spec.Memory == nil || *cl.Spec.Memory, cl.Spec.Target.Paused),
	}
	if vm.Annotations == nil {
		vm.Annotations = map[string]string{}
	}
	vm.Annotations[v1alpha1.AnnotationClone] = string(cl.UID)
	created, err := vms.Create(ctx, vm, metav1.CreateOptions{})
	switch {
	case err == nil:
		return created, nil, nil
	case apierrors.IsAlreadyExists(err):
		return nil, nil, err // retried: the next pass adopts or refuses it
	case apierrors.IsForbidden(err), apierrors.IsInvalid(err):
		return nil, &failure{"CreateFailed", fmt.Sprintf("cannot create VM %s: %v", vm.Name, err)}, nil
	}
	return nil, nil, fmt.Errorf("create VM %s: %w", vm.Name, err)
}

// TargetSpec is the spec of a clone of a VM with spec source, held by
// hypervisor node: the source's machine, none of its identity (MACs come
// from the new UID), on node. A memory clone runs from the start: a
// Manual or Halted run strategy, which would stop it, becomes Always.
func TargetSpec(source *v1alpha1.VirtualMachineSpec, node string, memory, paused bool) *v1alpha1.VirtualMachineSpec {
	spec := source.DeepCopy()
	spec.NodeName = ""
	spec.PowerAction = nil
	spec.Paused = paused
	spec.NodeSelector = map[string]string{v1alpha1.LabelHypervisor: node}
	for i := range spec.Interfaces {
		spec.Interfaces[i].MACAddress = ""
	}
	if memory && (spec.RunStrategy == v1alpha1.RunStrategyManual || spec.RunStrategy == v1alpha1.RunStrategyHalted) {
		spec.RunStrategy = v1alpha1.RunStrategyAlways
	}
	return spec
}

// watch fails an InProgress clone whose VM the agent will not make: the
// VM was deleted, the hypervisor has no room for it, or its agent is down.
func (c *Controller) watch(ctx context.Context, cl *v1alpha1.VirtualMachineClone) (time.Duration, error) {
	vm, err := c.vms.VirtualMachines(cl.Namespace).Get(cl.Status.VirtualMachineName)
	switch {
	case apierrors.IsNotFound(err) || (err == nil && string(vm.UID) != cl.Status.VirtualMachineUID):
		return 0, c.fail(ctx, cl, failure{"TargetDeleted", fmt.Sprintf("VM %s was deleted before the clone was done", cl.Status.VirtualMachineName)})
	case err != nil:
		return 0, err
	}
	if sched := meta.FindStatusCondition(vm.Status.Conditions, v1alpha1.VirtualMachineConditionScheduled); vm.Spec.NodeName == "" && sched != nil && sched.Status == metav1.ConditionFalse {
		return 0, c.fail(ctx, cl, failure{"HypervisorFull", fmt.Sprintf("hypervisor %s holds the clone's source and has no room for VM %s: %s",
			cl.Status.NodeName, vm.Name, sched.Message)})
	}
	hv, err := c.hypervisors.Get(cl.Status.NodeName)
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	bound := vm.DeepCopy()
	bound.Spec.NodeName = cl.Status.NodeName
	if reason, msg := snapshotcontroller.Blocked(bound, hvOrNil(hv, err)); reason != "" {
		if cl.Status.StartTime != nil && c.now().Sub(cl.Status.StartTime.Time) >= c.AgentTimeout {
			return 0, c.fail(ctx, cl, failure{reason, msg})
		}
	}
	return checkInProgress, nil
}

func hvOrNil(hv *v1alpha1.Hypervisor, err error) *v1alpha1.Hypervisor {
	if err != nil {
		return nil
	}
	return hv
}

// deleteTarget deletes the VM a failed clone created: it never got the
// disks and domain it was made for.
func (c *Controller) deleteTarget(ctx context.Context, cl *v1alpha1.VirtualMachineClone) error {
	name := cl.Status.VirtualMachineName
	if name == "" {
		return nil
	}
	vm, err := c.vms.VirtualMachines(cl.Namespace).Get(name)
	if apierrors.IsNotFound(err) || (err == nil && (vm.Annotations[v1alpha1.AnnotationClone] != string(cl.UID) || vm.DeletionTimestamp != nil)) {
		return nil
	}
	if err != nil {
		return err
	}
	uid := vm.UID
	err = c.client.VesselV1alpha1().VirtualMachines(cl.Namespace).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete VM %s of failed clone %s: %w", name, cl.Name, err)
	}
	klog.FromContext(ctx).V(2).Info("Deleted the VM of a failed clone", "clone", cl.Namespace+"/"+cl.Name, "vm", name)
	return nil
}

func (c *Controller) fail(ctx context.Context, cl *v1alpha1.VirtualMachineClone, f failure) error {
	now := metav1.NewTime(c.now())
	cl.Status.Phase = v1alpha1.CloneFailed
	cl.Status.Error = f.msg
	cl.Status.CompletionTime = &now
	c.setCondition(cl, metav1.ConditionFalse, f.reason, f.msg)
	if err := c.writeStatus(ctx, cl); err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Clone failed", "clone", cl.Namespace+"/"+cl.Name, "reason", f.reason, "err", f.msg)
	return c.deleteTarget(ctx, cl)
}

func (c *Controller) setCondition(cl *v1alpha1.VirtualMachineClone, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&cl.Status.Conditions, metav1.Condition{
		Type: v1alpha1.CloneConditionReady, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: cl.Generation, LastTransitionTime: metav1.NewTime(c.now()),
	})
}

// writeStatus writes with the cached resourceVersion: an agent that moved
// the clone meanwhile wins with a conflict, and the next pass sees its
// write.
func (c *Controller) writeStatus(ctx context.Context, cl *v1alpha1.VirtualMachineClone) error {
	_, err := c.client.VesselV1alpha1().VirtualMachineClones(cl.Namespace).UpdateStatus(ctx, cl, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update status of clone %s/%s: %w", cl.Namespace, cl.Name, err)
	}
	return nil
}
