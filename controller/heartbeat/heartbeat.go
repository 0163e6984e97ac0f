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
// heartbeating, so the scheduler stops placing VMs on it (the node
// lifecycle controller's job for Nodes).
package heartbeat

import (
	"context"
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

// Monitor checks heartbeats every Period and marks hypervisors silent for
// longer than Grace as Ready=Unknown.
type Monitor struct {
	client versioned.Interface
	lister listers.HypervisorLister
	synced cache.InformerSynced
	Period time.Duration
	Grace  time.Duration
	now    func() time.Time
}

// New returns a monitor with the defaults: a check every 5 s, 40 s grace
// (four missed 10 s heartbeats).
func New(client versioned.Interface, factory informers.SharedInformerFactory) *Monitor {
	informer := factory.Vessel().V1alpha1().Hypervisors()
	return &Monitor{
		client: client,
		lister: informer.Lister(),
		synced: informer.Informer().HasSynced,
		Period: 5 * time.Second,
		Grace:  40 * time.Second,
		now:    time.Now,
	}
}

// Run checks until ctx is done.
func (m *Monitor) Run(ctx context.Context) {
	if !cache.WaitForNamedCacheSyncWithContext(ctx, m.synced) {
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
	for _, hv := range hypervisors {
		if !stale(hv, m.now(), m.Grace) {
			continue
		}
		hv = hv.DeepCopy()
		meta.SetStatusCondition(&hv.Status.Conditions, metav1.Condition{
			Type:    v1alpha1.HypervisorConditionReady,
			Status:  metav1.ConditionUnknown,
			Reason:  "HeartbeatMissed",
			Message: fmt.Sprintf("the agent has not reported for more than %s", m.Grace),
		})
		_, err := m.client.VesselV1alpha1().Hypervisors().UpdateStatus(ctx, hv, metav1.UpdateOptions{})
		if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("mark hypervisor %s not ready: %w", hv.Name, err)
		}
	}
	return nil
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
