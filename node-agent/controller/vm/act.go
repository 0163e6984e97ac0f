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

package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/disks"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// defineRetry is how soon a failed domain definition is tried again.
const defineRetry = 10 * time.Second

// outcome is what acting did, for the report.
type outcome struct {
	// acted says the domain may have changed: the report looks again.
	acted bool
	// started says the guest was started.
	started bool
	// defineErr says why the domain could not be defined.
	defineErr string
	// requeue is how soon to look again, 0 for no particular time.
	requeue time.Duration
}

// act carries out a decision: it updates the VM's state, then takes the
// one action.
func (c *Controller) act(ctx context.Context, key string, o *observation, d *decision, st *vmState) (outcome, error) {
	vm := o.VM
	uid := string(vm.UID)
	logger := klog.FromContext(ctx)
	if d.StopReason != vm.Status.StopReason {
		c.mu.Lock()
		st.unsavedStopReason = d.StopReason
		c.mu.Unlock()
	}
	if st.prov != nil && (d.DropProvisioning || d.CancelProvisioning) && st.prov.cancel != nil {
		st.prov.cancel()
	}
	if d.DropProvisioning {
		st.prov = nil
	}
	if o.Stop == nil && d.Stop != nil {
		logger.V(2).Info("Stopping guest", "grace", d.StopStep.Grace, "restart", d.Pending != nil && d.Pending.Type == v1alpha1.PowerActionRestart)
	}
	st.stop = d.Stop

	out := outcome{acted: true, requeue: d.Requeue}
	switch d.Action {
	case actNone, actAwaitProvisioning:
		out.acted = false
	case actProvision:
		logger.V(2).Info("Provisioning", "redefine", o.Domain != nil)
		c.startProvisioning(ctx, key, vm, st)
		out.acted = false
	case actDefine:
		if err := disks.PrivateDir(c.vmDir(uid)); err != nil {
			return out, fmt.Errorf("create VM directory: %w", err)
		}
		if err := c.hv.Define(ctx, d.Config); err != nil {
			// Say so in status (a stale domain may hold the name, say) and
			// try again later, rather than sit in Provisioning silently.
			out.defineErr = fmt.Sprintf("cannot define the domain: %v", err)
			logger.Error(err, "Defining the domain failed; will retry")
			out.requeue = defineRetry
			break
		}
		logger.V(2).Info("Defined domain")
		out.requeue = time.Millisecond // start it (if it should run) right away
	case actStop:
		if err := c.stopStep(ctx, vm, d, st, o.Now); err != nil {
			return out, err
		}
	case actStart:
		if err := c.hv.Start(ctx, uid, d.StartPaused); err != nil {
			return out, err
		}
		logger.V(2).Info("Started domain", "paused", d.StartPaused)
		out.started = true
		t := metav1.NewTime(o.Now)
		c.mu.Lock()
		st.lastStart = &t
		c.mu.Unlock()
		if d.RestartDone != 0 {
			st.restartDone = d.RestartDone
		}
		c.event(vm, corev1.EventTypeNormal, "Started", "Started the guest on %s", c.cfg.Node)
	case actSoftReboot:
		if err := c.softReboot(ctx, vm); err != nil {
			return out, err
		}
		st.restartDone = d.RestartDone
	case actPause:
		if err := c.hv.Suspend(ctx, uid); err != nil {
			return out, err
		}
		c.event(vm, corev1.EventTypeNormal, "Paused", "Paused the guest")
	case actResume:
		if err := c.hv.Resume(ctx, uid); err != nil {
			return out, err
		}
		c.event(vm, corev1.EventTypeNormal, "Resumed", "Resumed the guest")
	case actFinalize:
		return out, c.finalize(ctx, key, vm)
	}
	return out, nil
}

// softReboot asks the guest agent to reboot the guest. The restart action
// counts as carried out either way: a soft restart the agent cannot do is
// reported as a warning Event, not retried (the API refuses it unless the
// agent was connected; it may have gone since). Only losing libvirtd is an
// error: the pass is retried.
func (c *Controller) softReboot(ctx context.Context, vm *v1alpha1.VirtualMachine) error {
	uid := string(vm.UID)
	var err error
	if ga, ok := c.hv.(hypervisor.GuestAgent); ok {
		err = ga.RebootGuest(ctx, uid)
	} else {
		err = fmt.Errorf("%w: this hypervisor cannot reach guest agents", hypervisor.ErrAgentNotConnected)
	}
	switch {
	case errors.Is(err, hypervisor.ErrDisconnected):
		return err
	case err != nil:
		klog.FromContext(ctx).Info("Soft restart failed", "err", err)
		c.event(vm, corev1.EventTypeWarning, "SoftRestartFailed", "Could not reboot the guest through its QEMU guest agent: %v", err)
		return nil
	}
	c.agents.changed(uid)
	klog.FromContext(ctx).V(2).Info("Rebooted the guest through its agent")
	c.event(vm, corev1.EventTypeNormal, "SoftRestarted", "Rebooted the guest's operating system through its QEMU guest agent")
	return nil
}

// stopStep carries out one step of a graceful stop.
func (c *Controller) stopStep(ctx context.Context, vm *v1alpha1.VirtualMachine, d *decision, st *vmState, now time.Time) error {
	uid := string(vm.UID)
	step := d.StopStep
	if step.Force {
		if err := c.hv.Destroy(ctx, uid); err != nil {
			return err
		}
		c.event(vm, corev1.EventTypeNormal, "Killed", "Forced the guest off after %s", step.Grace)
		return nil
	}
	if step.Resume {
		if err := c.hv.Resume(ctx, uid); err != nil {
			return err
		}
	}
	if step.ACPI {
		if err := c.hv.Shutdown(ctx, uid); err != nil {
			return err
		}
		st.stop.lastACPI = now
	}
	return nil
}

// finalize runs for a deleted VM whose guest is off: undefine the domain,
// remove the VM's files, then drop the finalizer so the API can delete
// the VM.
func (c *Controller) finalize(ctx context.Context, key string, vm *v1alpha1.VirtualMachine) error {
	uid := string(vm.UID)
	if err := c.hv.Undefine(ctx, uid); err != nil {
		return err
	}
	if err := os.RemoveAll(c.vmDir(uid)); err != nil {
		return fmt.Errorf("remove VM directory: %w", err)
	}
	if c.network != nil {
		if err := c.network.Release(ctx, uid); err != nil {
			return err
		}
	}
	vms := c.client.VesselV1alpha1().VirtualMachines(vm.Namespace)
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
		return fmt.Errorf("remove finalizer: %w", err)
	}
	klog.FromContext(ctx).V(2).Info("Cleaned up deleted VM")
	c.event(vm, corev1.EventTypeNormal, "CleanedUp", "Removed the domain and the VM's files from %s", c.cfg.Node)
	c.dropState(key)
	c.expected.Forget(key)
	return nil
}
