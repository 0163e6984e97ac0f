// Package snapshot is the node agent's snapshot controller: it takes the
// VirtualMachineSnapshots of the VMs bound to this node as libvirt
// internal snapshots, checks that ready ones still have their data, and
// deletes (or keeps) the data when a snapshot is deleted. Snapshots cannot
// be filtered by their VM's node on the server, so the informer watches
// the whole cluster (the agent's RBAC allows it) and only snapshots of VMs
// in the agent's VM cache, or whose data this node holds
// (status.nodeName), are enqueued.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	vesselinformers "github.com/vessel-vm/vessel/generated/informers/externalversions/vessel/v1alpha1"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/boundvm"
	"github.com/vessel-vm/vessel/node-agent/controller/cloneimage"
	"github.com/vessel-vm/vessel/node-agent/controller/worker"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// Deps are the controller's collaborators.
type Deps struct {
	Client versioned.Interface
	// Snapshots is the cluster-wide snapshot informer.
	Snapshots vesselinformers.VirtualMachineSnapshotInformer
	// VMs is the informer of the VMs bound to this node.
	VMs vesselinformers.VirtualMachineInformer
	// Hypervisor takes the snapshots; without hypervisor.Snapshotter every
	// snapshot fails as Unsupported.
	Hypervisor hypervisor.Hypervisor
	// Locks is shared with the controllers that drive domains too.
	Locks    *boundvm.Locks
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
	// StateDir, when set and the Hypervisor is a hypervisor.Cloner, is
	// where a memory snapshot's clone image is kept (cloneimage), taken
	// at the same instant as the snapshot: clones of the snapshot resume
	// from it.
	StateDir string
}

// Controller reconciles the snapshots of the VMs bound to one hypervisor.
type Controller struct {
	node   string
	client versioned.Interface
	// hv is nil when the Hypervisor implementation cannot take snapshots.
	hv hypervisor.Snapshotter
	// agent freezes guests' filesystems; nil when the Hypervisor cannot
	// reach guest agents.
	agent   hypervisor.GuestAgent
	domains hypervisor.Hypervisor
	// cloner is nil when no clone images are taken.
	cloner   hypervisor.Cloner
	stateDir string
	snaps    listers.VirtualMachineSnapshotLister
	byVM     cache.Indexer
	vms      boundvm.Lister
	locks    *boundvm.Locks
	recorder record.EventRecorder
	clock    clock.PassiveClock
	queue    *worker.Queue
}

const byVMIndex = "vessel.dev/snapshot-vm"

// waitForDomain is how soon a snapshot of a VM whose domain is not defined
// yet (its disks are being provisioned) looks again.
const waitForDomain = 2 * time.Second

// New builds the controller of node's snapshots and registers its informer
// handlers; start the informers before Run.
func New(node string, deps Deps) (*Controller, error) {
	c := &Controller{
		node:     node,
		client:   deps.Client,
		domains:  deps.Hypervisor,
		snaps:    deps.Snapshots.Lister(),
		byVM:     deps.Snapshots.Informer().GetIndexer(),
		vms:      boundvm.Lister{VMs: deps.VMs.Lister(), Node: node},
		locks:    deps.Locks,
		recorder: deps.Recorder,
		clock:    deps.Clock,
		queue:    worker.NewQueue("vessel-agent-snapshots"),
	}
	c.hv, _ = deps.Hypervisor.(hypervisor.Snapshotter)
	c.agent, _ = deps.Hypervisor.(hypervisor.GuestAgent)
	if deps.StateDir != "" {
		c.cloner, _ = deps.Hypervisor.(hypervisor.Cloner)
		c.stateDir = deps.StateDir
	}
	inf := deps.Snapshots.Informer()
	if err := inf.AddIndexers(cache.Indexers{byVMIndex: func(obj any) ([]string, error) {
		s, ok := obj.(*v1alpha1.VirtualMachineSnapshot)
		if !ok {
			return nil, nil
		}
		return []string{s.Namespace + "/" + s.Spec.VirtualMachineName}, nil
	}}); err != nil {
		return nil, fmt.Errorf("add snapshot index: %w", err)
	}
	if _, err := inf.AddEventHandler(worker.Handler(func(obj any) {
		if s, ok := obj.(*v1alpha1.VirtualMachineSnapshot); ok && c.isOurs(s) {
			c.queue.Enqueue(obj)
		}
	})); err != nil {
		return nil, fmt.Errorf("add snapshot event handler: %w", err)
	}
	// A VM bound here later, or whose domain appears, unblocks its
	// snapshots.
	if _, err := deps.VMs.Informer().AddEventHandler(worker.Handler(func(obj any) {
		if vm, ok := obj.(*v1alpha1.VirtualMachine); ok {
			c.enqueueForVM(boundvm.Key(vm))
		}
	})); err != nil {
		return nil, fmt.Errorf("add VM event handler for snapshots: %w", err)
	}
	return c, nil
}

// Run works on snapshots with workers goroutines until ctx ends. Each
// holds its VM's lock while it drives the domain, so they only overlap for
// different VMs.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.queue.Run(ctx, workers, c.sync)
}

// enqueueForVM enqueues the snapshots of a VM that still need work.
func (c *Controller) enqueueForVM(vmKey string) {
	objs, _ := c.byVM.ByIndex(byVMIndex, vmKey)
	for _, obj := range objs {
		if s := obj.(*v1alpha1.VirtualMachineSnapshot); !done(s) || s.DeletionTimestamp != nil {
			c.queue.Enqueue(s)
		}
	}
}

func done(s *v1alpha1.VirtualMachineSnapshot) bool {
	return s.Status.Phase == v1alpha1.SnapshotSucceeded || s.Status.Phase == v1alpha1.SnapshotFailed
}

// isOurs: the VM is bound here, or this node holds the data (the VM may be
// gone already).
func (c *Controller) isOurs(s *v1alpha1.VirtualMachineSnapshot) bool {
	return s.Status.NodeName == c.node || c.vms.Get(s.Namespace, s.Spec.VirtualMachineName) != nil
}

// LibvirtName names the libvirt snapshot of s by the object's UID: a
// snapshot deleted and re-created under the same name is a different one,
// and a retried create finds the one it took.
func LibvirtName(s *v1alpha1.VirtualMachineSnapshot) string { return string(s.UID) }

// sync takes, checks or cleans up one snapshot.
func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.snaps.VirtualMachineSnapshots(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	snap := cached.DeepCopy()
	vm := c.vms.Get(ns, snap.Spec.VirtualMachineName)
	if vm != nil && !boundvm.OwnedBy(snap, vm.UID) {
		vm = nil // a VM of the same name, created after the snapshot's
	}
	if vm == nil && snap.Status.NodeName != c.node {
		return 0, nil
	}
	switch {
	case snap.DeletionTimestamp != nil:
		return c.finalize(ctx, snap, vm)
	case snap.Status.Phase == v1alpha1.SnapshotSucceeded:
		return 0, c.check(ctx, snap, vm)
	case snap.Status.Phase == v1alpha1.SnapshotFailed:
		if vm != nil && slices.Contains(vm.Status.Snapshots, snap.Name) {
			return 0, c.updateVMSnapshotList(ctx, vm)
		}
		return 0, nil
	case vm == nil:
		// Its VM is gone; the garbage collector deletes the snapshot.
		return 0, nil
	}
	return c.take(ctx, snap, vm)
}

func includeMemory(s *v1alpha1.VirtualMachineSnapshot) bool {
	return s.Spec.IncludeMemory == nil || *s.Spec.IncludeMemory
}

// take moves a Pending snapshot through InProgress to Succeeded or
// Failed. Every step is safe to repeat after a crash: the finalizer and
// status writes are idempotent, and the libvirt snapshot is looked up by
// name before one is taken.
func (c *Controller) take(ctx context.Context, snap *v1alpha1.VirtualMachineSnapshot, vm *v1alpha1.VirtualMachine) (time.Duration, error) {
	node := c.node
	switch {
	case c.hv == nil:
		return 0, c.fail(ctx, snap, vm, "Unsupported", fmt.Sprintf("hypervisor %s cannot take snapshots", node))
	case vm.DeletionTimestamp != nil:
		return 0, c.fail(ctx, snap, vm, "VMDeleting", fmt.Sprintf("VM %s is being deleted", vm.Name))
	}
	vmKey := vm.Namespace + "/" + vm.Name
	release, ok := c.locks.TryLock(vmKey)
	if !ok {
		return boundvm.BusyRetry, nil
	}
	defer release()
	// The cache may still show this agent's own InProgress write after the
	// snapshot succeeded: work from the API's copy.
	fresh, err := c.client.VesselV1alpha1().VirtualMachineSnapshots(snap.Namespace).Get(ctx, snap.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if fresh.UID != snap.UID || done(fresh) || fresh.DeletionTimestamp != nil {
		return 0, nil // the next event for it does what is left
	}
	snap = fresh

	uid := string(vm.UID)
	dom, conflict, err := hypervisor.LookupOwned(ctx, c.domains, uid)
	switch {
	case err != nil:
		return 0, err
	case conflict != "":
		return 0, c.fail(ctx, snap, vm, "DomainConflict", conflict)
	case dom == nil && vm.Status.Phase == v1alpha1.VirtualMachineFailed:
		return 0, c.fail(ctx, snap, vm, "NoDomain",
			fmt.Sprintf("VM %s has no domain on %s (it failed: see its conditions)", vm.Name, node))
	case dom == nil:
		return waitForDomain, nil // still provisioning
	}

	// The finalizer goes on before libvirt holds any data, so the object
	// cannot be deleted without the agent cleaning up. A snapshot deleted
	// meanwhile refuses new finalizers: then nothing is taken.
	if !slices.Contains(snap.Finalizers, v1alpha1.FinalizerSnapshotCleanup) {
		snap.Finalizers = append(snap.Finalizers, v1alpha1.FinalizerSnapshotCleanup)
		updated, err := c.client.VesselV1alpha1().VirtualMachineSnapshots(snap.Namespace).Update(ctx, snap, metav1.UpdateOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				return 0, nil
			}
			// A conflict, or a deletion the cache has not shown yet: the
			// retry sees the newer object.
			return 0, fmt.Errorf("add finalizer: %w", err)
		}
		snap = updated
	}
	if snap.Status.Phase != v1alpha1.SnapshotInProgress || snap.Status.NodeName != node || snap.Status.VirtualMachineUID != uid {
		snap.Status.Phase = v1alpha1.SnapshotInProgress
		snap.Status.NodeName, snap.Status.VirtualMachineUID = node, uid
		snap.Status.Error = ""
		c.setCondition(snap, metav1.ConditionFalse, "InProgress", "the snapshot is being taken")
		if snap, err = c.writeStatus(ctx, snap); err != nil {
			return 0, err
		}
	}

	wantMemory := includeMemory(snap)
	start := time.Now()
	var frozen freezeResult
	info, imageErr, err := c.snapshotAndImage(ctx, snap, vm, dom, wantMemory, &frozen)
	if frozen.ThawErr != nil {
		c.event(snap, corev1.EventTypeWarning, "ThawFailed", "Could not thaw the filesystems of VM %s after the snapshot: %v", vm.Name, frozen.ThawErr)
	}
	switch {
	case errors.Is(err, hypervisor.ErrDisconnected):
		return 0, err
	case errors.Is(err, hypervisor.ErrNotFound):
		return 0, c.fail(ctx, snap, vm, "NoDomain", fmt.Sprintf("the domain of VM %s disappeared while the snapshot was taken", vm.Name))
	case err != nil:
		return 0, c.fail(ctx, snap, vm, "SnapshotFailed", err.Error())
	}
	took := time.Since(start)

	snap.Status.Phase = v1alpha1.SnapshotSucceeded
	snap.Status.ReadyToUse = true
	created := metav1.NewTime(info.CreationTime)
	if info.CreationTime.IsZero() {
		created = metav1.NewTime(c.clock.Now())
	}
	snap.Status.CreationTime = &created
	size := resource.NewQuantity(info.SizeBytes, resource.BinarySI)
	snap.Status.Size = size
	// A running guest's internal snapshot always holds its memory (QEMU
	// cannot snapshot only the disks of a running guest internally, and
	// external snapshots cannot be reverted here). With includeMemory=false
	// the saved memory is simply never used: a restore boots the guest
	// from the disks as they were, as from a crash-consistent disk copy.
	snap.Status.MemoryIncluded = info.Memory && wantMemory
	snap.Status.Error = ""
	msg := "the snapshot holds the VM's disks"
	switch {
	case snap.Status.MemoryIncluded:
		msg = "the snapshot holds the VM's disks and memory: a restore resumes the guest where it was"
	case info.Memory:
		msg = "the snapshot holds the VM's disks (taken while the guest ran, with includeMemory=false: a restore boots the guest from them)"
	}
	switch {
	case imageErr != nil:
		msg += fmt.Sprintf("; it cannot be cloned: %v", imageErr)
	case snap.Status.MemoryIncluded && c.cloner != nil:
		msg += "; it keeps a clone image: clones of it resume from its memory"
	}
	c.setCondition(snap, metav1.ConditionTrue, "Succeeded", msg)
	meta.SetStatusCondition(&snap.Status.Conditions, metav1.Condition{
		Type: v1alpha1.SnapshotConditionFilesystemsFrozen, Status: frozen.Status, Reason: frozen.Reason, Message: frozen.Message,
		ObservedGeneration: snap.Generation, LastTransitionTime: metav1.NewTime(c.clock.Now()),
	})
	if _, err := c.writeStatus(ctx, snap); err != nil {
		return 0, err
	}
	klog.FromContext(ctx).V(2).Info("Took snapshot", "snapshot", snap.Namespace+"/"+snap.Name, "vm", vmKey,
		"memory", snap.Status.MemoryIncluded, "size", size.String(), "took", took)
	c.event(snap, corev1.EventTypeNormal, "SnapshotTaken", "Took snapshot of VM %s on %s (%s) in %.1fs", vm.Name, node, kindOfSnapshot(snap), took.Seconds())
	return 0, c.updateVMSnapshotList(ctx, vm)
}

// snapshotAndImage takes the libvirt snapshot and, for a memory snapshot
// of a running guest on a hypervisor that clones, its clone image at the
// same instant: the guest is paused for both (the snapshot alone pauses it
// too, briefly). A clone image that cannot be taken leaves the snapshot
// good, only not cloneable (imageErr).
//
// A disk snapshot of a running guest is taken with its filesystems frozen
// through its guest agent (freeze.go); frozen says how that went.
func (c *Controller) snapshotAndImage(ctx context.Context, snap *v1alpha1.VirtualMachineSnapshot, vm *v1alpha1.VirtualMachine, dom *hypervisor.Domain, wantMemory bool, frozen *freezeResult) (info *hypervisor.Snapshot, imageErr, err error) {
	uid := string(vm.UID)
	spec := hypervisor.SnapshotSpec{
		Name:        LibvirtName(snap),
		Description: fmt.Sprintf("vessel.dev VirtualMachineSnapshot %s/%s of VM %s (includeMemory=%t)", snap.Namespace, snap.Name, vm.Name, wantMemory),
	}
	if c.cloner == nil || !wantMemory || !dom.State.Active() {
		take := func() (err error) {
			info, err = c.hv.CreateSnapshot(ctx, uid, spec)
			return err
		}
		freeze, notFrozen := freezePlan(c.agent, dom.State, wantMemory)
		if !freeze {
			*frozen = notFrozen
			return info, nil, take()
		}
		*frozen, err = withFrozenFilesystems(ctx, c.agent, uid, take)
		return info, nil, err
	}
	_, *frozen = freezePlan(c.agent, dom.State, wantMemory)
	if dom.State == hypervisor.StateRunning {
		if err := c.domains.Suspend(ctx, uid); err != nil {
			return nil, nil, err
		}
		defer func() {
			if rerr := c.domains.Resume(ctx, uid); rerr != nil && err == nil {
				err = rerr
			}
		}()
	}
	if info, err = c.hv.CreateSnapshot(ctx, uid, spec); err != nil {
		return nil, nil, err
	}
	if _, imageErr = c.cloner.CaptureImage(ctx, uid, cloneimage.ForSnapshot(c.stateDir, string(snap.UID)), true); imageErr != nil {
		klog.FromContext(ctx).Info("Could not keep a clone image with the snapshot", "snapshot", snap.Namespace+"/"+snap.Name, "err", imageErr)
	}
	return info, imageErr, nil
}

func kindOfSnapshot(s *v1alpha1.VirtualMachineSnapshot) string {
	if s.Status.MemoryIncluded {
		return "disks and memory"
	}
	return "disks"
}

// check confirms a ready snapshot's data is still on this node (a
// person with virsh may have deleted it) and keeps the VM's list right.
func (c *Controller) check(ctx context.Context, snap *v1alpha1.VirtualMachineSnapshot, vm *v1alpha1.VirtualMachine) error {
	if vm == nil || c.hv == nil || string(vm.UID) != snap.Status.VirtualMachineUID || vm.DeletionTimestamp != nil {
		return nil
	}
	_, err := c.hv.LookupSnapshot(ctx, snap.Status.VirtualMachineUID, LibvirtName(snap))
	switch {
	case errors.Is(err, hypervisor.ErrSnapshotNotFound):
		return c.fail(ctx, snap, vm, "DataLost",
			fmt.Sprintf("the snapshot's data is no longer on hypervisor %s", c.node))
	case err != nil && !errors.Is(err, hypervisor.ErrNotFound):
		return err
	}
	if slices.Contains(vm.Status.Snapshots, snap.Name) {
		return nil // the steady state: no API calls on every resync
	}
	return c.updateVMSnapshotList(ctx, vm)
}

// finalize deletes (or, with deletionPolicy Retain, keeps) the
// data of a snapshot being deleted, then releases its finalizer. When the
// VM is gone, its domain was undefined with its snapshot metadata and its
// overlay files (which held the data) removed: the finalizer is released
// all the same.
func (c *Controller) finalize(ctx context.Context, snap *v1alpha1.VirtualMachineSnapshot, vm *v1alpha1.VirtualMachine) (time.Duration, error) {
	if !slices.Contains(snap.Finalizers, v1alpha1.FinalizerSnapshotCleanup) {
		return 0, c.updateVMSnapshotList(ctx, vm)
	}
	if vm != nil {
		release, ok := c.locks.TryLock(vm.Namespace + "/" + vm.Name)
		if !ok {
			return boundvm.BusyRetry, nil
		}
		defer release()
	}
	uid := snap.Status.VirtualMachineUID
	if uid == "" {
		for _, ref := range snap.OwnerReferences {
			if ref.Kind == "VirtualMachine" {
				uid = string(ref.UID)
			}
		}
	}
	kept := snap.Spec.DeletionPolicy == v1alpha1.SnapshotDeletionPolicyRetain
	if !kept && uid != "" && c.hv != nil {
		err := c.hv.DeleteSnapshot(ctx, uid, LibvirtName(snap))
		if err != nil && !errors.Is(err, hypervisor.ErrNotFound) && !errors.Is(err, hypervisor.ErrNotOwned) {
			return 0, err
		}
	}
	snaps := c.client.VesselV1alpha1().VirtualMachineSnapshots(snap.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := snaps.Get(ctx, snap.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != snap.UID {
			return nil
		}
		i := slices.Index(cur.Finalizers, v1alpha1.FinalizerSnapshotCleanup)
		if i < 0 {
			return nil
		}
		cur.Finalizers = slices.Delete(cur.Finalizers, i, i+1)
		_, err = snaps.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, fmt.Errorf("remove finalizer: %w", err)
	}
	klog.FromContext(ctx).V(2).Info("Released deleted snapshot", "snapshot", snap.Namespace+"/"+snap.Name, "dataKept", kept)
	return 0, c.updateVMSnapshotList(ctx, vm)
}

// fail records a failure. The snapshot is not ready and never
// will be: a new snapshot object is the way to try again.
func (c *Controller) fail(ctx context.Context, snap *v1alpha1.VirtualMachineSnapshot, vm *v1alpha1.VirtualMachine, reason, msg string) error {
	snap.Status.Phase = v1alpha1.SnapshotFailed
	snap.Status.ReadyToUse = false
	snap.Status.Error = msg
	if snap.Status.NodeName == "" {
		snap.Status.NodeName = c.node
	}
	if snap.Status.VirtualMachineUID == "" && vm != nil {
		snap.Status.VirtualMachineUID = string(vm.UID)
	}
	c.setCondition(snap, metav1.ConditionFalse, reason, msg)
	if _, err := c.writeStatus(ctx, snap); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Snapshot failed", "snapshot", snap.Namespace+"/"+snap.Name, "reason", reason, "err", msg)
	c.event(snap, corev1.EventTypeWarning, "SnapshotFailed", "%s", msg)
	return c.updateVMSnapshotList(ctx, vm)
}

func (c *Controller) setCondition(s *v1alpha1.VirtualMachineSnapshot, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{
		Type: v1alpha1.SnapshotConditionReady, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: s.Generation, LastTransitionTime: metav1.NewTime(c.clock.Now()),
	})
}

func (c *Controller) writeStatus(ctx context.Context, s *v1alpha1.VirtualMachineSnapshot) (*v1alpha1.VirtualMachineSnapshot, error) {
	updated, err := c.client.VesselV1alpha1().VirtualMachineSnapshots(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update status of snapshot %s/%s: %w", s.Namespace, s.Name, err)
	}
	return updated, nil
}

// updateVMSnapshotList keeps the VM's status.snapshots equal to the names
// of its ready snapshots. It reads them from the API, not the cache, so a
// status this agent just wrote counts.
func (c *Controller) updateVMSnapshotList(ctx context.Context, vm *v1alpha1.VirtualMachine) error {
	if vm == nil || vm.DeletionTimestamp != nil {
		return nil
	}
	list, err := c.client.VesselV1alpha1().VirtualMachineSnapshots(vm.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.virtualMachineName", vm.Name).String(),
	})
	if err != nil {
		return fmt.Errorf("list snapshots of VM %s: %w", vm.Name, err)
	}
	var names []string
	for _, s := range list.Items {
		if s.Status.ReadyToUse && s.Status.VirtualMachineUID == string(vm.UID) && s.DeletionTimestamp == nil {
			names = append(names, s.Name)
		}
	}
	sort.Strings(names)
	vms := c.client.VesselV1alpha1().VirtualMachines(vm.Namespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := vms.Get(ctx, vm.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != vm.UID || slices.Equal(cur.Status.Snapshots, names) {
			return nil
		}
		cur.Status.Snapshots = names
		_, err = vms.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("update snapshots of VM %s: %w", vm.Name, err)
	}
	return nil
}

// event records a Kubernetes Event about a snapshot.
func (c *Controller) event(s *v1alpha1.VirtualMachineSnapshot, typ, reason, format string, args ...any) {
	c.recorder.Eventf(s, typ, reason, format, args...)
}
