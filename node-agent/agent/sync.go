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

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/disks"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// vmRuntime is what the agent remembers about one VM between passes. All of
// it can be lost (agent restart) without harm: the spec, the status and the
// domain are the truth, this only avoids repeating work.
type vmRuntime struct {
	uid string
	// stop is the graceful stop in progress, nil when none.
	stop *stopOp
	// restartDone is the restart action whose stop half is done.
	restartDone int64
	prov        *provisionRun

	// written is the VM as returned by the agent's last status write, and
	// writtenFrom the resourceVersion that write replaced: while the cache
	// still holds writtenFrom, it is stale and written is newer.
	written     *v1alpha1.VirtualMachine
	writtenFrom string
	// lastStart is when the agent last started the guest, and
	// unsavedStopReason a stop it noticed: facts that must survive a
	// failed status write.
	lastStart         *metav1.Time
	unsavedStopReason string
}

// defineRetry is how soon a failed domain definition is tried again.
const defineRetry = 10 * time.Second

type stopOp struct {
	deadline time.Time
	lastACPI time.Time
	actionID int64
}

// ipPollInterval is how often a running guest's console is re-read until it
// announced its address; ipPollWindow is for how long after start.
const (
	ipPollInterval = 2 * time.Second
	ipPollWindow   = 5 * time.Minute
)

func (a *Agent) runtime(key, uid string) *vmRuntime {
	a.mu.Lock()
	defer a.mu.Unlock()
	rt := a.runtimes[key]
	if rt == nil || rt.uid != uid {
		if rt != nil && rt.prov != nil && rt.prov.cancel != nil {
			rt.prov.cancel()
		}
		rt = &vmRuntime{uid: uid}
		a.runtimes[key] = rt
	}
	return rt
}

func (a *Agent) dropRuntime(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rt := a.runtimes[key]; rt != nil && rt.prov != nil && rt.prov.cancel != nil {
		rt.prov.cancel()
	}
	delete(a.runtimes, key)
}

// lookupDomain returns the VM's domain (nil when there is none) or, when a
// domain Vessel does not own holds the UUID, a message saying so.
func (a *Agent) lookupDomain(ctx context.Context, uid string) (*hypervisor.Domain, string, error) {
	dom, err := a.hv.Lookup(ctx, uid)
	switch {
	case errors.Is(err, hypervisor.ErrNotFound):
		return nil, "", nil
	case errors.Is(err, hypervisor.ErrNotOwned):
		return nil, fmt.Sprintf("a libvirt domain not created by Vessel already has UUID %s", uid), nil
	case err != nil:
		return nil, "", err
	}
	return dom, "", nil
}

// sync makes the VM's domain match its spec and rewrites its status. It
// returns how soon to look again when something is in flight.
func (a *Agent) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := a.lister.VirtualMachines(ns).Get(name)
	if apierrors.IsNotFound(err) {
		a.dropRuntime(key)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if cached.Spec.NodeName != a.cfg.HypervisorName {
		return 0, nil
	}
	// A snapshot or restore of this VM is driving its domain (vmlock.go).
	release, ok := a.lockForSync(key, cached)
	if !ok {
		return vmBusyRetry, nil
	}
	defer release()
	uid := string(cached.UID)
	rt := a.runtime(key, uid)
	vm := cached.DeepCopy()
	if rt.written != nil && cached.ResourceVersion == rt.writtenFrom {
		vm = rt.written.DeepCopy()
	}
	if rt.lastStart != nil && (vm.Status.StartedAt == nil || vm.Status.StartedAt.Before(rt.lastStart)) {
		vm.Status.StartedAt = rt.lastStart.DeepCopy()
	}
	if rt.unsavedStopReason != "" {
		vm.Status.StopReason = rt.unsavedStopReason
	}
	logger := klog.FromContext(ctx).WithValues("vm", key)

	dom, conflict, err := a.lookupDomain(ctx, uid)
	if err != nil {
		return 0, err
	}
	now := a.now()
	deleting := vm.DeletionTimestamp != nil
	pending := pendingAction(vm.Spec.PowerAction, vm.Status.ObservedPowerActionID)
	active := dom != nil && dom.State.Active()

	// A stop the agent did not ask for is noticed before deciding, so
	// RerunOnFailure and Once see why the guest stopped.
	in := powerInput{
		Strategy:         vm.Spec.RunStrategy,
		Action:           vm.Spec.PowerAction,
		ObservedActionID: vm.Status.ObservedPowerActionID,
		StopReason:       vm.Status.StopReason,
		EverStarted:      vm.Status.StartedAt != nil,
		Active:           true,
	}
	wanted := !deleting && shouldRun(in)
	stopReason := noticeStop(vm.Status.Phase, vm.Status.StopReason, dom, rt.stop != nil || !wanted)
	if stopReason != vm.Status.StopReason {
		rt.unsavedStopReason = stopReason
	}
	in.StopReason, in.Active = stopReason, active
	if !active {
		rt.stop = nil
	}
	wantHash := machineSpecHash(&vm.Spec)
	if rt.prov != nil && (rt.prov.stale(vm.Generation, now) || rt.prov.hash != wantHash) {
		if rt.prov.cancel != nil {
			rt.prov.cancel()
		}
		rt.prov = nil
	}
	// A spec edited since the domain was defined is applied while the
	// guest is off (the next start boots the new definition).
	specChanged := dom != nil && dom.SpecHash != "" && dom.SpecHash != wantHash
	needDefinition := conflict == "" && (dom == nil || (specChanged && !active))

	run := !deleting && conflict == "" && shouldRun(in)
	restarting := run && pending != nil && pending.Type == v1alpha1.PowerActionRestart && rt.restartDone != pending.ID
	var provCfg *hypervisor.DomainConfig
	provOK := false
	if rt.prov != nil {
		provCfg, provOK = rt.prov.result()
	}
	provFailed := rt.prov != nil && rt.prov.state().Reason != ""

	shouldDelete := deleting
	shouldProvision := needDefinition && rt.prov == nil
	shouldDefine := needDefinition && provOK
	shouldStop := active && (!run || restarting)
	shouldStart := dom != nil && !active && run && !specChanged
	shouldPause := dom != nil && dom.State == hypervisor.StateRunning && vm.Spec.Paused && run
	shouldResume := dom != nil && dom.State == hypervisor.StatePaused && !vm.Spec.Paused && run

	observed := vm.Status.ObservedPowerActionID
	started := false
	var requeue time.Duration
	var defineErr string
	acted := true
	switch {
	case conflict != "":
		acted = false
	case shouldDelete:
		return a.cleanup(ctx, key, vm, dom, rt)
	case provFailed && needDefinition:
		acted = false
	case shouldProvision:
		logger.V(2).Info("Provisioning", "redefine", dom != nil)
		a.startProvisioning(ctx, key, vm, rt)
		acted = false
	case needDefinition && !shouldDefine:
		acted = false // provisioning runs; it enqueues the VM when done
	case shouldDefine:
		if err := disks.PrivateDir(a.vmDir(uid)); err != nil {
			return 0, fmt.Errorf("create VM directory: %w", err)
		}
		if err := a.hv.Define(ctx, provCfg); err != nil {
			// Say so in status (a stale domain may hold the name, say) and
			// try again later, rather than sit in Provisioning silently.
			defineErr = fmt.Sprintf("cannot define the domain: %v", err)
			logger.Error(err, "Defining the domain failed; will retry")
			requeue = defineRetry
			break
		}
		logger.V(2).Info("Defined domain")
		requeue = time.Millisecond // start it (if it should run) right away
	case shouldStop:
		requeue, err = a.gracefulStop(ctx, vm, dom, rt, pending, restarting)
		if err != nil {
			return 0, err
		}
	case shouldStart:
		if err := a.hv.Start(ctx, uid, vm.Spec.Paused); err != nil {
			return 0, err
		}
		logger.V(2).Info("Started domain", "paused", vm.Spec.Paused)
		started = true
		t := metav1.NewTime(now)
		rt.lastStart = &t
		if pending != nil && pending.Type == v1alpha1.PowerActionRestart {
			rt.restartDone = pending.ID
		}
		a.event(vm, corev1.EventTypeNormal, "Started", "Started the guest on %s", a.cfg.HypervisorName)
	case shouldPause:
		if err := a.hv.Suspend(ctx, uid); err != nil {
			return 0, err
		}
		a.event(vm, corev1.EventTypeNormal, "Paused", "Paused the guest")
	case shouldResume:
		if err := a.hv.Resume(ctx, uid); err != nil {
			return 0, err
		}
		a.event(vm, corev1.EventTypeNormal, "Resumed", "Resumed the guest")
	default:
		acted = false
	}
	if acted {
		if dom, conflict, err = a.lookupDomain(ctx, uid); err != nil {
			return 0, err
		}
		wasActive := active
		active = dom != nil && dom.State.Active()
		if !active {
			rt.stop = nil
		}
		if wasActive && !active {
			// This pass stopped it (a forced stop takes effect at once).
			stopReason = StopReasonRequested
			rt.unsavedStopReason = stopReason
		}
	}

	// An action counts as carried out once the domain is where it wanted.
	if pending != nil {
		switch pending.Type {
		case v1alpha1.PowerActionStart:
			if active || !run {
				observed = pending.ID
			}
		case v1alpha1.PowerActionStop:
			if !active {
				observed = pending.ID
			}
		case v1alpha1.PowerActionRestart:
			if rt.restartDone == pending.ID && active {
				observed = pending.ID
			}
		}
	}

	obs := &observation{
		Now:              metav1.NewTime(now),
		NodeName:         a.cfg.HypervisorName,
		Domain:           dom,
		Conflict:         conflict + defineErr,
		ShouldRun:        run,
		Stopping:         rt.stop != nil && active,
		WantPaused:       vm.Spec.Paused,
		RestartRequired:  active && specChanged,
		Started:          started,
		StopReason:       stopReason,
		ObservedActionID: observed,
		IPs:              map[string]string{},
		MACs:             map[string]string{},
	}
	if rt.prov != nil {
		obs.Prov = rt.prov.state()
	}
	for i, nic := range vm.Spec.Interfaces {
		obs.MACs[nic.Name] = macFor(uid, nic.Name, nic.MACAddress)
		if i == 0 && active {
			obs.IPs[nic.Name] = consoleIP(filepath.Join(a.vmDir(uid), "console.log"))
		}
	}
	status := computeStatus(vm, obs)
	if err := a.writeStatus(ctx, vm, rt, status); err != nil {
		return 0, err
	}

	if active && len(vm.Spec.Interfaces) > 0 && obs.IPs[vm.Spec.Interfaces[0].Name] == "" &&
		status.StartedAt != nil && now.Sub(status.StartedAt.Time) < ipPollWindow {
		requeue = minPositive(requeue, ipPollInterval)
	}
	if run && dom != nil && !active {
		requeue = minPositive(requeue, time.Second)
	}
	return requeue, nil
}

func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 {
		return b
	}
	return min(a, b)
}

// writeStatus updates the VM's status when it changed, and records an
// Event for a phase transition.
func (a *Agent) writeStatus(ctx context.Context, vm *v1alpha1.VirtualMachine, rt *vmRuntime, status v1alpha1.VirtualMachineStatus) error {
	if equality.Semantic.DeepEqual(vm.Status, status) {
		return nil
	}
	oldPhase := vm.Status.Phase
	update := vm.DeepCopy()
	update.Status = status
	updated, err := a.client.VesselV1alpha1().VirtualMachines(vm.Namespace).UpdateStatus(ctx, update, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update status: %w", err)
	}
	// Until the informer delivers this write, the next pass starts from it
	// rather than from the cache's older copy.
	rt.written, rt.writtenFrom = updated, vm.ResourceVersion
	rt.unsavedStopReason = ""
	if oldPhase != status.Phase {
		klog.FromContext(ctx).V(2).Info("Phase changed", "vm", vm.Namespace+"/"+vm.Name, "from", oldPhase, "to", status.Phase, "stopReason", status.StopReason)
		typ := corev1.EventTypeNormal
		if status.Phase == v1alpha1.VirtualMachineFailed {
			typ = corev1.EventTypeWarning
		}
		a.event(vm, typ, string(status.Phase), "VM is %s", status.Phase)
	}
	return nil
}

// gracefulStop asks the guest to power off, repeating the ACPI request
// every ACPIInterval, and forces it off once the grace period is over. It
// never waits: it returns when to look again.
func (a *Agent) gracefulStop(ctx context.Context, vm *v1alpha1.VirtualMachine, dom *hypervisor.Domain, rt *vmRuntime, pending *v1alpha1.PowerAction, restarting bool) (time.Duration, error) {
	now := a.now()
	var action *v1alpha1.PowerAction
	if pending != nil && (pending.Type == v1alpha1.PowerActionStop || pending.Type == v1alpha1.PowerActionRestart) {
		action = pending
	}
	grace := stopGrace(&vm.Spec, action)
	var actionID int64
	if action != nil {
		actionID = action.ID
	}
	switch {
	case rt.stop == nil:
		rt.stop = &stopOp{deadline: now.Add(grace), actionID: actionID}
		klog.FromContext(ctx).V(2).Info("Stopping guest", "vm", vm.Namespace+"/"+vm.Name, "grace", grace, "restart", restarting)
	case actionID != rt.stop.actionID:
		// A newer stop (kubectl vm stop --force) may only shorten the wait.
		if d := now.Add(grace); d.Before(rt.stop.deadline) {
			rt.stop.deadline = d
		}
		rt.stop.actionID = actionID
	}
	uid := string(vm.UID)
	if !now.Before(rt.stop.deadline) {
		if err := a.hv.Destroy(ctx, uid); err != nil {
			return 0, err
		}
		a.event(vm, corev1.EventTypeNormal, "Killed", "Forced the guest off after %s", grace)
		return 0, nil
	}
	if dom.State == hypervisor.StatePaused {
		// A guest with suspended CPUs cannot answer ACPI.
		if err := a.hv.Resume(ctx, uid); err != nil {
			return 0, err
		}
	}
	if now.Sub(rt.stop.lastACPI) >= a.cfg.ACPIInterval {
		if err := a.hv.Shutdown(ctx, uid); err != nil {
			return 0, err
		}
		rt.stop.lastACPI = now
	}
	return min(a.cfg.ACPIInterval, max(rt.stop.deadline.Sub(now), time.Millisecond)), nil
}

// cleanup runs for a VM being deleted: stop the guest (with its grace
// period), undefine the domain, remove the VM's files, then drop the
// finalizer so the API can delete the VM.
func (a *Agent) cleanup(ctx context.Context, key string, vm *v1alpha1.VirtualMachine, dom *hypervisor.Domain, rt *vmRuntime) (time.Duration, error) {
	if !slices.Contains(vm.Finalizers, v1alpha1.FinalizerNodeCleanup) {
		return 0, nil
	}
	if rt.prov != nil && rt.prov.cancel != nil {
		rt.prov.cancel()
		if rt.prov.state().InProgress {
			// Let it stop writing into the VM directory before removing it.
			return 200 * time.Millisecond, nil
		}
	}
	uid := string(vm.UID)
	if dom != nil && dom.State.Active() {
		requeue, err := a.gracefulStop(ctx, vm, dom, rt, nil, false)
		if err != nil {
			return 0, err
		}
		obs := &observation{
			Now: metav1.NewTime(a.now()), NodeName: a.cfg.HypervisorName, Domain: dom, Stopping: true,
			StopReason: vm.Status.StopReason, ObservedActionID: vm.Status.ObservedPowerActionID,
		}
		if err := a.writeStatus(ctx, vm, rt, computeStatus(vm, obs)); err != nil {
			return 0, err
		}
		return requeue, nil
	}
	if err := a.hv.Undefine(ctx, uid); err != nil {
		return 0, err
	}
	if err := os.RemoveAll(a.vmDir(uid)); err != nil {
		return 0, fmt.Errorf("remove VM directory: %w", err)
	}
	vms := a.client.VesselV1alpha1().VirtualMachines(vm.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := vms.Get(ctx, vm.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != vm.UID {
			return nil
		}
		i := slices.Index(cur.Finalizers, v1alpha1.FinalizerNodeCleanup)
		if i < 0 {
			return nil
		}
		cur.Finalizers = slices.Delete(cur.Finalizers, i, i+1)
		_, err = vms.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, fmt.Errorf("remove finalizer: %w", err)
	}
	klog.FromContext(ctx).V(2).Info("Cleaned up deleted VM", "vm", key)
	a.event(vm, corev1.EventTypeNormal, "CleanedUp", "Removed the domain and the VM's files from %s", a.cfg.HypervisorName)
	a.dropRuntime(key)
	return 0, nil
}
