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

// Package snapshot fails the snapshots and restores no node agent can
// carry out. The agent of a VM's hypervisor does all the work; but when
// that agent is down, or the VM was never bound to a hypervisor, nobody
// would ever say so and the object would stay Pending. This controller,
// run by the vessel-apiserver, marks such objects Failed with the reason
// once they have waited PendingTimeout.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

// Defaults of a Controller.
const (
	DefaultPendingTimeout = 30 * time.Second
	DefaultPeriod         = 5 * time.Second
)

// Controller fails Pending snapshots and restores whose VM's agent cannot
// act on them.
type Controller struct {
	client      versioned.Interface
	snapshots   listers.VirtualMachineSnapshotLister
	restores    listers.VirtualMachineRestoreLister
	vms         listers.VirtualMachineLister
	hypervisors listers.HypervisorLister
	synced      []cache.InformerSynced

	// PendingTimeout is how long an object may stay Pending before it is
	// checked: an agent that is up takes it well before.
	PendingTimeout time.Duration
	// Period is how often Pending objects are checked.
	Period time.Duration
	now    func() time.Time
}

// New wires a controller to the shared informers; call Run after starting them.
func New(client versioned.Interface, factory informers.SharedInformerFactory) *Controller {
	v := factory.Vessel().V1alpha1()
	c := &Controller{
		client:         client,
		snapshots:      v.VirtualMachineSnapshots().Lister(),
		restores:       v.VirtualMachineRestores().Lister(),
		vms:            v.VirtualMachines().Lister(),
		hypervisors:    v.Hypervisors().Lister(),
		PendingTimeout: DefaultPendingTimeout,
		Period:         DefaultPeriod,
		now:            time.Now,
	}
	c.synced = []cache.InformerSynced{
		v.VirtualMachineSnapshots().Informer().HasSynced, v.VirtualMachineRestores().Informer().HasSynced,
		v.VirtualMachines().Informer().HasSynced, v.Hypervisors().Informer().HasSynced,
	}
	return c
}

// Run checks until ctx is done.
func (c *Controller) Run(ctx context.Context) {
	if !cache.WaitForNamedCacheSyncWithContext(ctx, c.synced...) {
		return
	}
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := c.check(ctx); err != nil {
			klog.FromContext(ctx).Error(err, "Checking pending snapshots and restores")
		}
	}, c.Period)
}

func (c *Controller) check(ctx context.Context) error {
	var errs []error
	snaps, err := c.snapshots.List(labels.Everything())
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if !c.overdue(s.ObjectMeta, s.Status.Phase) {
			continue
		}
		reason, msg := c.blocked(s.Namespace, s.Spec.VirtualMachineName)
		if reason == "" {
			continue
		}
		s = s.DeepCopy()
		s.Status.Phase = v1alpha1.SnapshotFailed
		s.Status.ReadyToUse = false
		s.Status.Error = msg
		meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{
			Type: v1alpha1.SnapshotConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg,
			ObservedGeneration: s.Generation, LastTransitionTime: metav1.NewTime(c.now()),
		})
		// The update carries the cached resourceVersion: an agent that
		// took the snapshot meanwhile wins with a conflict.
		_, err := c.client.VesselV1alpha1().VirtualMachineSnapshots(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{})
		if ignorable(err) != nil {
			errs = append(errs, fmt.Errorf("fail snapshot %s/%s: %w", s.Namespace, s.Name, err))
		} else if err == nil {
			klog.FromContext(ctx).Info("Snapshot failed: no agent can take it", "snapshot", s.Namespace+"/"+s.Name, "reason", msg)
		}
	}
	restores, err := c.restores.List(labels.Everything())
	if err != nil {
		return err
	}
	for _, r := range restores {
		if !c.overdue(r.ObjectMeta, r.Status.Phase) {
			continue
		}
		reason, msg := c.blocked(r.Namespace, r.Spec.VirtualMachineName)
		if reason == "" {
			continue
		}
		r = r.DeepCopy()
		r.Status.Phase = v1alpha1.SnapshotFailed
		r.Status.Error = msg
		meta.SetStatusCondition(&r.Status.Conditions, metav1.Condition{
			Type: v1alpha1.RestoreConditionComplete, Status: metav1.ConditionFalse, Reason: reason, Message: msg,
			ObservedGeneration: r.Generation, LastTransitionTime: metav1.NewTime(c.now()),
		})
		_, err := c.client.VesselV1alpha1().VirtualMachineRestores(r.Namespace).UpdateStatus(ctx, r, metav1.UpdateOptions{})
		if ignorable(err) != nil {
			errs = append(errs, fmt.Errorf("fail restore %s/%s: %w", r.Namespace, r.Name, err))
		} else if err == nil {
			klog.FromContext(ctx).Info("Restore failed: no agent can carry it out", "restore", r.Namespace+"/"+r.Name, "reason", msg)
		}
	}
	return errors.Join(errs...)
}

func ignorable(err error) error {
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// overdue: still Pending (no agent picked it up) after PendingTimeout.
func (c *Controller) overdue(m metav1.ObjectMeta, phase v1alpha1.SnapshotPhase) bool {
	if phase != "" && phase != v1alpha1.SnapshotPending {
		return false
	}
	return m.DeletionTimestamp == nil && c.now().Sub(m.CreationTimestamp.Time) >= c.PendingTimeout
}

// blocked says why no agent can act for the VM, or returns an empty reason
// when its agent should.
func (c *Controller) blocked(namespace, vmName string) (reason, msg string) {
	vm, err := c.vms.VirtualMachines(namespace).Get(vmName)
	if apierrors.IsNotFound(err) {
		return "VMNotFound", fmt.Sprintf("VM %s does not exist", vmName)
	}
	if err != nil {
		return "", ""
	}
	var hv *v1alpha1.Hypervisor
	if vm.Spec.NodeName != "" {
		if hv, err = c.hypervisors.Get(vm.Spec.NodeName); err != nil && !apierrors.IsNotFound(err) {
			return "", ""
		}
	}
	return Blocked(vm, hv)
}

// Blocked is the decision: a VM not bound to a hypervisor has no agent; a
// bound VM's agent is down when its Hypervisor is missing or not Ready
// (the heartbeat monitor marks it Unknown once heartbeats stop). hv is the
// VM's Hypervisor, nil when it does not exist.
func Blocked(vm *v1alpha1.VirtualMachine, hv *v1alpha1.Hypervisor) (reason, msg string) {
	switch {
	case vm.Spec.NodeName == "":
		return "NotBound", "VM is not bound to a hypervisor"
	case hv == nil:
		return "HypervisorNotReady", fmt.Sprintf("hypervisor %s is not ready: it does not exist", vm.Spec.NodeName)
	}
	ready := meta.FindStatusCondition(hv.Status.Conditions, v1alpha1.HypervisorConditionReady)
	switch {
	case ready == nil:
		return "HypervisorNotReady", fmt.Sprintf("hypervisor %s is not ready: its agent never reported", hv.Name)
	case ready.Status != metav1.ConditionTrue:
		detail := ready.Message
		if detail == "" {
			detail = ready.Reason
		}
		return "HypervisorNotReady", fmt.Sprintf("hypervisor %s is not ready: %s", hv.Name, detail)
	}
	return "", ""
}
