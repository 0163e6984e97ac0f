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

package clone

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	utiltrace "k8s.io/utils/trace"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/boundvm"
	"github.com/vessel-vm/vessel/node-agent/controller/cloneimage"
	"github.com/vessel-vm/vessel/node-agent/controller/vm"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// failure is why a clone cannot be made; it ends the clone as Failed.
type failure struct {
	reason, msg string
}

func (f *failure) Error() string { return f.msg }

func fail(reason, format string, args ...any) error {
	return &failure{reason: reason, msg: fmt.Sprintf(format, args...)}
}

func memoryClone(cl *v1alpha1.VirtualMachineClone) bool {
	return cl.Spec.Memory == nil || *cl.Spec.Memory
}

// sync makes one clone's domain once its VM is bound here.
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
	if !c.isOurs(cached) {
		return 0, nil
	}
	target := c.vms.Get(ns, cached.Status.VirtualMachineName)
	if target == nil || string(target.UID) != cached.Status.VirtualMachineUID {
		return 0, nil // not bound here yet: its VM's event brings it back
	}
	targetKey := boundvm.Key(target)
	// The VM controller syncs a new VM once as it is bound, for a moment:
	// the clone goes on as soon as it is done (BusyRetry stays the
	// fallback), which is most of what a user waits on before the restore.
	release, ok := c.locks.TryLockOrNotify(targetKey, func() { c.queue.Add(key) })
	if !ok {
		return boundvm.BusyRetry, nil
	}
	defer release()
	// Making a clone is not idempotent (it resumes a guest): work from the
	// API's copy, not a cache that may still show it InProgress.
	cl, err := c.client.VesselV1alpha1().VirtualMachineClones(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if cl.UID != cached.UID || !c.isOurs(cl) {
		return 0, nil
	}
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithValues("clone", key, "vm", targetKey))

	c.gcMu.RLock()
	defer c.gcMu.RUnlock()
	// Where a slow clone spent its time, in the agent's log (-v=2).
	trace := utiltrace.New("Clone", utiltrace.Field{Key: "clone", Value: key})
	defer trace.LogIfLong(time.Second)
	ctx = utiltrace.ContextWithTrace(ctx, trace)
	res, err := c.make(ctx, cl, target)
	var f *failure
	switch {
	case errors.As(err, &f):
		return 0, c.fail(ctx, cl, f)
	case errors.Is(err, errBusy):
		return boundvm.BusyRetry, nil
	case err != nil:
		return 0, err
	}
	return 0, c.succeed(ctx, cl, target, res)
}

// errBusy says another controller drives the source VM right now.
var errBusy = errors.New("the source VM is busy")

// result is what making a clone did.
type result struct {
	memory     bool
	identityOK bool
	paused     time.Duration // how long the source paused, 0 for a snapshot's image
}

// make gets the clone image and makes the clone's domain from it. Every
// step is safe to repeat after a crash: an image is captured once, and a
// domain that already runs (or, disks only, exists) is left alone.
func (c *Controller) make(ctx context.Context, cl *v1alpha1.VirtualMachineClone, target *v1alpha1.VirtualMachine) (result, error) {
	var res result
	switch {
	case c.hv == nil:
		return res, fail("Unsupported", "hypervisor %s cannot clone VMs", c.cfg.Node)
	case target.DeletionTimestamp != nil:
		return res, fail("TargetDeleting", "the new VM %s is being deleted", target.Name)
	}
	uid := string(target.UID)
	dom, conflict, err := hypervisor.LookupOwned(ctx, c.domains, uid)
	switch {
	case err != nil:
		return res, err
	case conflict != "":
		return res, fail("DomainConflict", "%s", conflict)
	}
	memory := memoryClone(cl)
	res.memory = memory
	if dom != nil && (dom.State.Active() || !memory) {
		return res, nil // made before a crash or a lost status write
	}

	trace := utiltrace.FromContext(ctx).Nest("Make")
	defer trace.LogIfLong(time.Second)
	trace.Step("Looked up the domain")
	img, paused, err := c.image(ctx, cl, memory)
	if err != nil {
		return res, err
	}
	trace.Step("Got the clone image")
	res.paused = paused
	want := vm.MachineSpecHash(&target.Spec)
	cfg, makeFiles, err := c.domainConfig(ctx, target, img, want)
	if err != nil {
		return res, err
	}
	if !memory {
		if err := makeFiles(); err != nil {
			return res, err
		}
		if err := c.domains.Define(ctx, cfg); err != nil {
			return res, fmt.Errorf("define clone domain: %w", err)
		}
		c.vmctl.Enqueue(boundvm.Key(target))
		return res, nil
	}
	if err := c.hv.RestoreClone(ctx, img, cfg, false, makeFiles); err != nil {
		var f *failure
		switch {
		case errors.As(err, &f):
			return res, f
		case errors.Is(err, hypervisor.ErrDisconnected):
			return res, err
		}
		return res, fail("RestoreFailed", "%v", err)
	}
	trace.Step("Restored the domain")
	c.vmctl.GuestStarted(boundvm.Key(target), uid, c.clock.Now())
	res.identityOK = c.tellIdentity(ctx, target, cfg)
	trace.Step("Told the guest its identity", utiltrace.Field{Key: "acknowledged", Value: res.identityOK})
	if target.Spec.Paused {
		// A warm clone: resumed, told who it is, then paused until handed out.
		if err := c.domains.Suspend(ctx, uid); err != nil {
			return res, fmt.Errorf("pause the clone: %w", err)
		}
	}
	// A VM's own image is of no use once its clone runs; only the frozen
	// disks its overlays need stay (collectImages removes them with it).
	if cl.Spec.Source.VirtualMachineName != "" {
		_ = os.Remove(img.MemoryFile())
	}
	return res, nil
}

// image returns the clone image the clone is made from: captured now from
// the source VM, or the one taken with the source snapshot.
func (c *Controller) image(ctx context.Context, cl *v1alpha1.VirtualMachineClone, memory bool) (*hypervisor.CloneImage, time.Duration, error) {
	src := c.vms.Get(cl.Namespace, sourceVMName(cl, c))
	if cl.Spec.Source.SnapshotName != "" {
		snap, err := c.snaps.VirtualMachineSnapshots(cl.Namespace).Get(cl.Spec.Source.SnapshotName)
		if apierrors.IsNotFound(err) {
			return nil, 0, fail("SnapshotNotFound", "snapshot %s no longer exists", cl.Spec.Source.SnapshotName)
		}
		if err != nil {
			return nil, 0, err
		}
		img, err := hypervisor.ReadCloneImage(cloneimage.ForSnapshot(c.cfg.StateDir, string(snap.UID)))
		switch {
		case errors.Is(err, hypervisor.ErrNoCloneImage):
			return nil, 0, fail("NoCloneImage", "snapshot %s has no clone image on hypervisor %s: only snapshots that hold memory have one", snap.Name, c.cfg.Node)
		case err != nil:
			return nil, 0, err
		case memory && !img.Memory:
			return nil, 0, fail("NoMemory", "the clone image of snapshot %s holds no memory", snap.Name)
		}
		if src != nil && string(src.UID) == img.SourceUID && vm.MachineSpecHash(&src.Spec) != img.SpecHash {
			return nil, 0, fail("SpecChanged", "VM %s's spec changed since snapshot %s was taken: its clones would not be the machine the snapshot saved; take a new snapshot", src.Name, snap.Name)
		}
		return img, 0, nil
	}

	if src == nil || string(src.UID) != cl.Status.SourceVirtualMachineUID {
		return nil, 0, fail("SourceNotFound", "VM %s (uid %s) is no longer on hypervisor %s", cl.Spec.Source.VirtualMachineName, cl.Status.SourceVirtualMachineUID, c.cfg.Node)
	}
	release, ok := c.locks.TryLock(boundvm.Key(src))
	if !ok {
		return nil, 0, errBusy
	}
	defer release()
	img, err := c.hv.CaptureImage(ctx, string(src.UID), cloneimage.ForClone(c.cfg.StateDir, string(cl.UID)), memory)
	switch {
	case errors.Is(err, hypervisor.ErrNotActive):
		return nil, 0, fail("SourceNotRunning", "VM %s is not running: a memory clone resumes its running guest; start it, or clone it with memory: false", src.Name)
	case errors.Is(err, hypervisor.ErrNotFound):
		return nil, 0, fail("NoSourceDomain", "VM %s has no domain on hypervisor %s", src.Name, c.cfg.Node)
	case errors.Is(err, hypervisor.ErrDisconnected):
		return nil, 0, err
	case err != nil:
		return nil, 0, fail("CaptureFailed", "%v", err)
	}
	if img.SpecHash != "" && vm.MachineSpecHash(&src.Spec) != img.SpecHash {
		return nil, 0, fail("SpecChanged", "VM %s runs an older definition than its spec (restart it to apply its spec, then clone it)", src.Name)
	}
	return img, img.Paused, nil
}

// sourceVMName is the VM the clone copies (for a snapshot, the snapshot's).
func sourceVMName(cl *v1alpha1.VirtualMachineClone, c *Controller) string {
	if n := cl.Spec.Source.VirtualMachineName; n != "" {
		return n
	}
	if snap, err := c.snaps.VirtualMachineSnapshots(cl.Namespace).Get(cl.Spec.Source.SnapshotName); err == nil {
		return snap.Spec.VirtualMachineName
	}
	return ""
}

// tellIdentity tells a resumed clone's guest its identity and says whether
// it acknowledged. A guest that ignores the identity port is still a
// clone: it only keeps its source's hostname and addresses.
func (c *Controller) tellIdentity(ctx context.Context, target *v1alpha1.VirtualMachine, cfg *hypervisor.DomainConfig) bool {
	seed := make([]byte, 32)
	_, _ = rand.Read(seed)
	id := hypervisor.GuestIdentity{InstanceID: string(target.UID), Hostname: target.Name, Seed: seed}
	for _, nic := range cfg.NICs {
		id.MACs = append(id.MACs, nic.MAC)
	}
	idCtx, cancel := context.WithTimeout(ctx, c.cfg.IdentityTimeout)
	defer cancel()
	ok, err := c.hv.SendIdentity(idCtx, string(target.UID), id)
	if err != nil {
		klog.FromContext(ctx).Info("Could not tell the clone its identity", "err", err)
	}
	return ok
}

func (c *Controller) succeed(ctx context.Context, cl *v1alpha1.VirtualMachineClone, target *v1alpha1.VirtualMachine, res result) error {
	now := c.clock.Now()
	took := now.Sub(cl.CreationTimestamp.Time)
	cl.Status.Phase = v1alpha1.CloneSucceeded
	cl.Status.MemoryRestored = res.memory
	cl.Status.IdentityAcknowledged = res.identityOK
	cl.Status.CompletionTime = &metav1.Time{Time: now}
	cl.Status.Duration = &metav1.Duration{Duration: took}
	cl.Status.Error = ""
	msg := fmt.Sprintf("VM %s's disks are copy-on-write overlays of %s's; it boots from them", target.Name, describeSource(cl))
	if res.memory {
		msg = fmt.Sprintf("VM %s resumed from the memory of %s", target.Name, describeSource(cl))
		if res.identityOK {
			msg += "; its guest acknowledged its new identity"
		} else {
			msg += "; its guest did not acknowledge its new identity (no handler for the identity port)"
		}
		if target.Spec.Paused {
			msg += "; it is paused, ready to hand out"
		}
	}
	c.setCondition(cl, metav1.ConditionTrue, "Succeeded", msg)
	if _, err := c.writeStatus(ctx, cl); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Cloned", "memory", res.memory, "identity", res.identityOK, "sourcePaused", res.paused, "took", took)
	c.recorder.Eventf(cl, corev1.EventTypeNormal, "Cloned", "%s in %.2fs", msg, took.Seconds())
	return nil
}

func describeSource(cl *v1alpha1.VirtualMachineClone) string {
	if s := cl.Spec.Source.SnapshotName; s != "" {
		return "snapshot " + s
	}
	return "VM " + cl.Spec.Source.VirtualMachineName
}

func (c *Controller) fail(ctx context.Context, cl *v1alpha1.VirtualMachineClone, f *failure) error {
	now := metav1.NewTime(c.clock.Now())
	cl.Status.Phase = v1alpha1.CloneFailed
	cl.Status.Error = f.msg
	cl.Status.CompletionTime = &now
	c.setCondition(cl, metav1.ConditionFalse, f.reason, f.msg)
	if _, err := c.writeStatus(ctx, cl); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Clone failed", "reason", f.reason, "err", f.msg)
	c.recorder.Eventf(cl, corev1.EventTypeWarning, "CloneFailed", "%s", f.msg)
	return nil
}

func (c *Controller) setCondition(cl *v1alpha1.VirtualMachineClone, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&cl.Status.Conditions, metav1.Condition{
		Type: v1alpha1.CloneConditionReady, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: cl.Generation, LastTransitionTime: metav1.NewTime(c.clock.Now()),
	})
}

func (c *Controller) writeStatus(ctx context.Context, cl *v1alpha1.VirtualMachineClone) (*v1alpha1.VirtualMachineClone, error) {
	updated, err := c.client.VesselV1alpha1().VirtualMachineClones(cl.Namespace).UpdateStatus(ctx, cl, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update status of clone %s/%s: %w", cl.Namespace, cl.Name, err)
	}
	return updated, nil
}
