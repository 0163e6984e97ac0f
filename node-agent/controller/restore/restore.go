// Package restore is the node agent's restore controller: it reverts the
// domain of a VM bound to this node to a VirtualMachineSnapshot and leaves
// the guest as the VM's run strategy asks. Restores cannot be filtered by
// their VM's node on the server, so the informer watches the whole cluster
// and only restores of VMs in the agent's VM cache are enqueued.
package restore

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	vesselinformers "github.com/vessel-vm/vessel/generated/informers/externalversions/vessel/v1alpha1"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/boundvm"
	"github.com/vessel-vm/vessel/node-agent/controller/runstrategy"
	"github.com/vessel-vm/vessel/node-agent/controller/snapshot"
	"github.com/vessel-vm/vessel/node-agent/controller/worker"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// VMController is what a restore needs of the VM controller, which owns
// the VM's power state and status: it stays away from a VM while one of
// its restores is InProgress (it reads that from the API), and is told
// afterwards what the restore did.
type VMController interface {
	// GuestStarted says the restore booted the guest at at, so the VM's
	// status.startedAt moves as for any start.
	GuestStarted(key, uid string, at time.Time)
	// Enqueue asks for a pass over the VM with key namespace/name.
	Enqueue(key string)
}

// Deps are the controller's collaborators.
type Deps struct {
	Client versioned.Interface
	// Restores is the cluster-wide restore informer.
	Restores vesselinformers.VirtualMachineRestoreInformer
	// Snapshots lists snapshots (the cluster-wide informer's lister).
	Snapshots listers.VirtualMachineSnapshotLister
	// VMs is the informer of the VMs bound to this node.
	VMs vesselinformers.VirtualMachineInformer
	// VMController is told what a restore did to a VM's guest.
	VMController VMController
	// Hypervisor reverts and boots the domains; without
	// hypervisor.Snapshotter every restore fails as Unsupported.
	Hypervisor hypervisor.Hypervisor
	// Locks is shared with the controllers that drive domains too.
	Locks    *boundvm.Locks
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
}

// Controller carries out the restores of the VMs bound to one hypervisor.
type Controller struct {
	node     string
	client   versioned.Interface
	restores listers.VirtualMachineRestoreLister
	byVM     cache.Indexer
	snaps    listers.VirtualMachineSnapshotLister
	vms      boundvm.Lister
	vmctl    VMController
	domains  hypervisor.Hypervisor
	// hv is nil when the Hypervisor implementation cannot revert snapshots.
	hv       hypervisor.Snapshotter
	locks    *boundvm.Locks
	recorder record.EventRecorder
	clock    clock.PassiveClock
	queue    *worker.Queue
}

const byVMIndex = "vessel.dev/restore-vm"

// New builds the controller of node's restores and registers its informer
// handlers; start the informers before Run.
func New(node string, deps Deps) (*Controller, error) {
	c := &Controller{
		node:     node,
		client:   deps.Client,
		restores: deps.Restores.Lister(),
		byVM:     deps.Restores.Informer().GetIndexer(),
		snaps:    deps.Snapshots,
		vms:      boundvm.Lister{VMs: deps.VMs.Lister(), Node: node},
		vmctl:    deps.VMController,
		domains:  deps.Hypervisor,
		locks:    deps.Locks,
		recorder: deps.Recorder,
		clock:    deps.Clock,
		queue:    worker.NewQueue("vessel-agent-restores"),
	}
	c.hv, _ = deps.Hypervisor.(hypervisor.Snapshotter)
	inf := deps.Restores.Informer()
	if err := inf.AddIndexers(cache.Indexers{byVMIndex: func(obj any) ([]string, error) {
		r, ok := obj.(*v1alpha1.VirtualMachineRestore)
		if !ok {
			return nil, nil
		}
		return []string{r.Namespace + "/" + r.Spec.VirtualMachineName}, nil
	}}); err != nil {
		return nil, fmt.Errorf("add restore index: %w", err)
	}
	if _, err := inf.AddEventHandler(worker.Handler(func(obj any) {
		if r, ok := obj.(*v1alpha1.VirtualMachineRestore); ok && c.vms.Get(r.Namespace, r.Spec.VirtualMachineName) != nil {
			c.queue.Enqueue(obj)
		}
	})); err != nil {
		return nil, fmt.Errorf("add restore event handler: %w", err)
	}
	// A VM bound here later, or whose domain appears, unblocks its
	// restores.
	if _, err := deps.VMs.Informer().AddEventHandler(worker.Handler(func(obj any) {
		vm, ok := obj.(*v1alpha1.VirtualMachine)
		if !ok {
			return
		}
		objs, _ := c.byVM.ByIndex(byVMIndex, boundvm.Key(vm))
		for _, obj := range objs {
			if r := obj.(*v1alpha1.VirtualMachineRestore); !done(r) {
				c.queue.Enqueue(r)
			}
		}
	})); err != nil {
		return nil, fmt.Errorf("add VM event handler for restores: %w", err)
	}
	return c, nil
}

// Run carries out restores with workers goroutines until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.queue.Run(ctx, workers, c.sync)
}

func done(r *v1alpha1.VirtualMachineRestore) bool {
	return r.Status.Phase == v1alpha1.SnapshotSucceeded || r.Status.Phase == v1alpha1.SnapshotFailed
}

// sync carries out one restore: it checks the snapshot once more
// (the API checked it on create, but it may have been deleted or lost its
// data since), marks the restore InProgress, reverts the domain and leaves
// the guest in the state the VM's run strategy asks for. It holds the VM's
// lock throughout, and the VM controller also stays away while the restore
// is InProgress, so nothing starts or stops the guest behind its back.
func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.restores.VirtualMachineRestores(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	r := cached.DeepCopy()
	vm := c.vms.Get(ns, r.Spec.VirtualMachineName)
	if vm == nil || done(r) || r.DeletionTimestamp != nil {
		return 0, nil
	}
	vmKey := vm.Namespace + "/" + vm.Name
	if !boundvm.OwnedBy(r, vm.UID) {
		return 0, c.fail(ctx, r, "VMRecreated", fmt.Sprintf("VM %s was deleted and re-created after the restore was requested", vm.Name))
	}
	if vm.DeletionTimestamp != nil {
		return 0, c.fail(ctx, r, "VMDeleting", fmt.Sprintf("VM %s is being deleted", vm.Name))
	}
	snap, reason, msg, err := c.restorableSnapshot(ctx, r, vm)
	if err != nil {
		return 0, err
	}
	if msg != "" {
		return 0, c.fail(ctx, r, reason, msg)
	}
	if c.hv == nil {
		return 0, c.fail(ctx, r, "Unsupported", fmt.Sprintf("hypervisor %s cannot restore snapshots", c.node))
	}

	release, ok := c.locks.TryLock(vmKey)
	if !ok {
		return boundvm.BusyRetry, nil
	}
	defer release()
	// A revert is not idempotent (it throws away what the guest did since),
	// so the restore is read from the API, not the cache: an event for an
	// older version (this agent's own InProgress write, say) must not run
	// a finished restore again.
	fresh, err := c.client.VesselV1alpha1().VirtualMachineRestores(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if fresh.UID != r.UID || done(fresh) || fresh.DeletionTimestamp != nil {
		return 0, nil
	}
	r = fresh
	// Whatever happens, the VM controller looks at the guest afterwards.
	defer c.vmctl.Enqueue(vmKey)

	uid := string(vm.UID)
	dom, conflict, err := hypervisor.LookupOwned(ctx, c.domains, uid)
	switch {
	case err != nil:
		return 0, err
	case conflict != "":
		return 0, c.fail(ctx, r, "DomainConflict", conflict)
	case dom == nil:
		return 0, c.fail(ctx, r, "NoDomain", fmt.Sprintf("VM %s has no domain on %s", vm.Name, c.node))
	}
	if r.Status.Phase != v1alpha1.SnapshotInProgress {
		r.Status.Phase = v1alpha1.SnapshotInProgress
		c.setCondition(r, metav1.ConditionFalse, "InProgress", "the VM is being reverted to snapshot "+snap.Name)
		if r, err = c.writeStatus(ctx, r); err != nil {
			return 0, err
		}
	}

	plan := planRestore(vm, dom, snap.Status.MemoryIncluded)
	start := time.Now()
	err = c.hv.RevertToSnapshot(ctx, uid, snapshot.LibvirtName(snap), plan.target)
	if err == nil && plan.boot {
		// Booting from the reverted disks is part of the revert (under the
		// VM's lock, retried with it): left to the VM controller, a Once or
		// RerunOnFailure guest would look stopped and stay off.
		if err = c.domains.Start(ctx, uid, vm.Spec.Paused); err == nil {
			c.vmctl.GuestStarted(vmKey, uid, c.clock.Now())
		}
	}
	switch {
	case errors.Is(err, hypervisor.ErrDisconnected):
		return 0, err // still InProgress: retried once libvirtd is back
	case errors.Is(err, hypervisor.ErrSnapshotNotFound):
		return 0, c.fail(ctx, r, "DataLost", fmt.Sprintf("the data of snapshot %s is no longer on hypervisor %s", snap.Name, c.node))
	case err != nil:
		return 0, c.fail(ctx, r, "RevertFailed", err.Error())
	}
	took := time.Since(start)

	now := metav1.NewTime(c.clock.Now())
	r.Status.Phase = v1alpha1.SnapshotSucceeded
	r.Status.Complete = true
	r.Status.RestoreTime = &now
	r.Status.Error = ""
	c.setCondition(r, metav1.ConditionTrue, "Succeeded", plan.describe(snap.Name))
	if _, err := c.writeStatus(ctx, r); err != nil {
		return 0, err
	}
	klog.FromContext(ctx).V(2).Info("Restored VM", "vm", vmKey, "snapshot", snap.Name, "target", plan.target, "boot", plan.boot, "took", took)
	c.event(r, corev1.EventTypeNormal, "Restored", "Restored VM %s from snapshot %s in %.1fs: %s", vm.Name, snap.Name, took.Seconds(), plan.describe(snap.Name))
	return 0, nil
}

// restorableSnapshot returns the snapshot to restore, or why it cannot be
// (reason and msg set).
func (c *Controller) restorableSnapshot(ctx context.Context, r *v1alpha1.VirtualMachineRestore, vm *v1alpha1.VirtualMachine) (*v1alpha1.VirtualMachineSnapshot, string, string, error) {
	snap, err := c.snaps.VirtualMachineSnapshots(r.Namespace).Get(r.Spec.SnapshotName)
	if apierrors.IsNotFound(err) {
		// The cache may lag behind a snapshot made just before.
		snap, err = c.client.VesselV1alpha1().VirtualMachineSnapshots(r.Namespace).Get(ctx, r.Spec.SnapshotName, metav1.GetOptions{})
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, "SnapshotNotFound", fmt.Sprintf("snapshot %s does not exist", r.Spec.SnapshotName), nil
	case err != nil:
		return nil, "", "", err
	case snap.Spec.VirtualMachineName != vm.Name || snap.Status.VirtualMachineUID != string(vm.UID):
		return nil, "WrongVM", fmt.Sprintf("snapshot %s is of VM %s (uid %s), not of VM %s (uid %s)",
			snap.Name, snap.Spec.VirtualMachineName, snap.Status.VirtualMachineUID, vm.Name, vm.UID), nil
	case snap.DeletionTimestamp != nil:
		return nil, "SnapshotDeleting", fmt.Sprintf("snapshot %s is being deleted", snap.Name), nil
	case !snap.Status.ReadyToUse:
		return nil, "SnapshotNotReady", fmt.Sprintf("snapshot %s is not ready to use (phase %s)", snap.Name, snap.Status.Phase), nil
	}
	return snap, "", "", nil
}

// restorePlan is how a revert is carried out.
type restorePlan struct {
	target hypervisor.RevertTarget
	// boot starts the guest after a revert that left it shut off.
	boot bool
	// resumed says the guest continues from the saved memory.
	resumed bool
}

// planRestore decides how to revert: a snapshot with memory into a VM that
// should run resumes the guest where it was (paused if spec.paused); a
// disk-only one reverts the disks with the domain off and boots the guest
// from them; a VM that should not run gets its disks reverted and stays
// off. Whether the VM should run is the run strategy's answer for the VM as
// it is now: a restore does not change what the user asked for.
func planRestore(vm *v1alpha1.VirtualMachine, dom *hypervisor.Domain, memory bool) restorePlan {
	run := runstrategy.ShouldRun(runstrategy.Input{
		Strategy:         vm.Spec.RunStrategy,
		Action:           vm.Spec.PowerAction,
		ObservedActionID: vm.Status.ObservedPowerActionID,
		StopReason:       vm.Status.StopReason,
		EverStarted:      vm.Status.StartedAt != nil,
		Active:           dom.State.Active(),
	})
	switch {
	case !run:
		return restorePlan{target: hypervisor.RevertShutoff}
	case memory && vm.Spec.Paused:
		return restorePlan{target: hypervisor.RevertPaused, resumed: true}
	case memory:
		return restorePlan{target: hypervisor.RevertRunning, resumed: true}
	}
	return restorePlan{target: hypervisor.RevertShutoff, boot: true}
}

func (p restorePlan) describe(snapshot string) string {
	switch {
	case p.resumed:
		return fmt.Sprintf("the guest resumed from the memory saved in snapshot %s", snapshot)
	case p.boot:
		return fmt.Sprintf("the disks were reverted to snapshot %s and the guest booted from them", snapshot)
	}
	return fmt.Sprintf("the disks were reverted to snapshot %s; the VM stays stopped, as its run strategy says", snapshot)
}

func (c *Controller) fail(ctx context.Context, r *v1alpha1.VirtualMachineRestore, reason, msg string) error {
	r.Status.Phase = v1alpha1.SnapshotFailed
	r.Status.Complete = false
	r.Status.Error = msg
	c.setCondition(r, metav1.ConditionFalse, reason, msg)
	if _, err := c.writeStatus(ctx, r); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Restore failed", "restore", r.Namespace+"/"+r.Name, "reason", reason, "err", msg)
	c.event(r, corev1.EventTypeWarning, "RestoreFailed", "%s", msg)
	return nil
}

func (c *Controller) setCondition(r *v1alpha1.VirtualMachineRestore, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&r.Status.Conditions, metav1.Condition{
		Type: v1alpha1.RestoreConditionComplete, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: r.Generation, LastTransitionTime: metav1.NewTime(c.clock.Now()),
	})
}

func (c *Controller) writeStatus(ctx context.Context, r *v1alpha1.VirtualMachineRestore) (*v1alpha1.VirtualMachineRestore, error) {
	updated, err := c.client.VesselV1alpha1().VirtualMachineRestores(r.Namespace).UpdateStatus(ctx, r, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update status of restore %s/%s: %w", r.Namespace, r.Name, err)
	}
	return updated, nil
}

// event records a Kubernetes Event about a restore.
func (c *Controller) event(r *v1alpha1.VirtualMachineRestore, typ, reason, format string, args ...any) {
	c.recorder.Eventf(r, typ, reason, format, args...)
}
