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

// Package heartbeat marks a Hypervisor not Ready when its agent stops
// heartbeating, so the scheduler stops placing VMs on it, and marks the
// VMs bound to a hypervisor that is not Ready as Ready=Unknown, since
// nobody can tell whether their guests run (the node lifecycle
// controller's job for Nodes and their pods).
package heartbeat

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
	"github.com/vessel-vm/vessel/controller/vmindex"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

// Monitor checks heartbeats every Period and marks hypervisors silent for
// longer than Grace as Ready=Unknown.
type Monitor struct {
	client versioned.Interface
	lister listers.HypervisorLister
	// byNode finds the VMs bound to a hypervisor.
	byNode cache.Indexer
	synced []cache.InformerSynced
	Period time.Duration
	Grace  time.Duration
	now    func() time.Time
}

// New returns a monitor with the defaults: a check every 5 s, 40 s grace
// (four missed 10 s heartbeats).
func New(client versioned.Interface, factory informers.SharedInformerFactory) (*Monitor, error) {
	hvInformer := factory.Vessel().V1alpha1().Hypervisors()
	vmInformer := factory.Vessel().V1alpha1().VirtualMachines().Informer()
	if err := vmindex.AddByNode(vmInformer); err != nil {
		return nil, err
	}
	return &Monitor{
		client: client,
		lister: hvInformer.Lister(),
		byNode: vmInformer.GetIndexer(),
		synced: []cache.InformerSynced{hvInformer.Informer().HasSynced, vmInformer.HasSynced},
		Period: 5 * time.Second,
		Grace:  40 * time.Second,
		now:    time.Now,
	}, nil
}

// Run checks until ctx is done.
func (m *Monitor) Run(ctx context.Context) {
	if !cache.WaitForNamedCacheSyncWithContext(ctx, m.synced...) {
		return
	}
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := m.check(ctx); err != nil {
			klog.FromContext(ctx).Error(err, "Checking hypervisor heartbeats")
		}
	}, m.Period)
}

func (m *Monitor) check(ctx context.Context) error {
	hypervisors, err := m.lister.List(labels.Everything())
	if err != nil {
		return err
	}
	var errs []error
	for _, hv := range hypervisors {
		if stale(hv, m.now(), m.Grace) {
			hv = hv.DeepCopy()
			meta.SetStatusCondition(&hv.Status.Conditions, metav1.Condition{
				Type:    v1alpha1.HypervisorConditionReady,
				Status:  metav1.ConditionUnknown,
				Reason:  "HeartbeatMissed",
				Message: fmt.Sprintf("the agent has not reported for more than %s", m.Grace),
			})
			_, err := m.client.VesselV1alpha1().Hypervisors().UpdateStatus(ctx, hv, metav1.UpdateOptions{})
			if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("mark hypervisor %s not ready: %w", hv.Name, err))
				continue
			}
		}
		if err := m.markVMs(ctx, hv); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// markVMs sets Ready=Unknown on the VMs bound to hv while hv is not
// Ready, saying which hypervisor and for how long. The agent sets Ready
// again from what it observes once it is back.
func (m *Monitor) markVMs(ctx context.Context, hv *v1alpha1.Hypervisor) error {
	cond := vmCondition(hv, m.now())
	if cond == nil {
		return nil
	}
	objs, err := m.byNode.ByIndex(vmindex.ByNode, hv.Name)
	if err != nil {
		return err
	}
	var errs []error
	for _, obj := range objs {
		vm := obj.(*v1alpha1.VirtualMachine)
		if !needsMark(vm, cond) {
			continue
		}
		vm = vm.DeepCopy()
		c := *cond
		c.ObservedGeneration = vm.Generation
		meta.SetStatusCondition(&vm.Status.Conditions, c)
		_, err := m.client.VesselV1alpha1().VirtualMachines(vm.Namespace).UpdateStatus(ctx, vm, metav1.UpdateOptions{})
		if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("mark VM %s/%s not ready: %w", vm.Namespace, vm.Name, err))
		}
	}
	return errors.Join(errs...)
}

// vmCondition is the Ready condition of a VM bound to hv, or nil while hv
// is Ready. Its message rounds the silence down to a few steps, so that
// the VMs of a dead host are rewritten a handful of times, not on every
// check.
func vmCondition(hv *v1alpha1.Hypervisor, now time.Time) *metav1.Condition {
	ready := meta.FindStatusCondition(hv.Status.Conditions, v1alpha1.HypervisorConditionReady)
	msg := v1alpha1.HypervisorNotReady(hv.Name, ready, hv.Status.LastHeartbeatTime, now, silenceStep)
	if msg == "" {
		return nil
	}
	return &metav1.Condition{
		Type:               v1alpha1.VirtualMachineConditionReady,
		Status:             metav1.ConditionUnknown,
		Reason:             v1alpha1.VirtualMachineReasonHypervisorNotReady,
		Message:            msg,
		LastTransitionTime: metav1.NewTime(now),
	}
}

// needsMark says vm's Ready condition is not cond yet.
func needsMark(vm *v1alpha1.VirtualMachine, cond *metav1.Condition) bool {
	if vm.DeletionTimestamp != nil && len(vm.Finalizers) == 0 {
		return false
	}
	cur := meta.FindStatusCondition(vm.Status.Conditions, v1alpha1.VirtualMachineConditionReady)
	return cur == nil || cur.Status != cond.Status || cur.Reason != cond.Reason || cur.Message != cond.Message
}

// silenceSteps are the durations a VM's message names.
var silenceSteps = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 48 * time.Hour, 7 * 24 * time.Hour,
}

// silenceStep rounds d down to the largest step it has passed.
func silenceStep(d time.Duration) time.Duration {
	step := d
	for _, s := range silenceSteps {
		if d >= s {
			step = s
		}
	}
	return step
}

// stale is true for a hypervisor reported Ready whose last heartbeat is
// older than grace.
func stale(hv *v1alpha1.Hypervisor, now time.Time, grace time.Duration) bool {
	if !meta.IsStatusConditionTrue(hv.Status.Conditions, v1alpha1.HypervisorConditionReady) {
		return false
	}
	last := hv.Status.LastHeartbeatTime
	return last == nil || now.Sub(last.Time) > grace
}
