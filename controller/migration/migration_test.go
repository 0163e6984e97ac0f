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

package migration

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned/fake"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
)

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func hypervisor(name string, ready metav1.ConditionStatus) *v1alpha1.Hypervisor {
	h := &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: name}}
	h.Status.Allocatable = v1alpha1.HypervisorResources{CPUs: 4, Memory: resource.MustParse("1Gi"), VMs: 10}
	h.Status.MigrationEndpoint = "10.250.0.1:7470"
	h.Status.Conditions = []metav1.Condition{{Type: v1alpha1.HypervisorConditionReady, Status: ready, Message: "the agent has not reported for more than 40s"}}
	return h
}

func runningVM(name, node string) *v1alpha1.VirtualMachine {
	vm := &v1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name)}}
	vm.Spec.NodeName, vm.Spec.CPUs, vm.Spec.Memory = node, 1, resource.MustParse("128Mi")
	vm.Status.Phase = v1alpha1.VirtualMachineRunning
	return vm
}

func migration(name, vm string, created time.Time) *v1alpha1.VirtualMachineMigration {
	return &v1alpha1.VirtualMachineMigration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", CreationTimestamp: metav1.NewTime(created)},
		Spec:       v1alpha1.VirtualMachineMigrationSpec{VirtualMachineName: vm},
		Status:     v1alpha1.VirtualMachineMigrationStatus{Phase: v1alpha1.MigrationPending},
	}
}

// controller syncs nothing by itself: the tests call sync, with the
// cache as it was when the informers synced.
func controller(t *testing.T, objs ...runtime.Object) (*Controller, *fake.Clientset) {
	t.Helper()
	client := fake.NewSimpleClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(client, factory)
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return now }
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		t.Fatal("informers did not sync")
	}
	return c, client
}

func status(t *testing.T, client *fake.Clientset, name string) v1alpha1.VirtualMachineMigrationStatus {
	t.Helper()
	m, err := client.VesselV1alpha1().VirtualMachineMigrations("ns").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m.Status
}

func TestTwoMigrationsOfOneVMCreatedTogetherStartOnce(t *testing.T) {
	c, client := controller(t, hypervisor("hv1", metav1.ConditionTrue), hypervisor("hv2", metav1.ConditionTrue),
		runningVM("a", "hv1"), migration("first", "a", now), migration("second", "a", now))
	ctx := context.Background()
	if err := c.sync(ctx, "ns/first"); err != nil {
		t.Fatal(err)
	}
	// The cache has not seen "first" Running yet.
	if err := c.sync(ctx, "ns/second"); err != nil {
		t.Fatal(err)
	}
	if s := status(t, client, "first"); s.Phase != v1alpha1.MigrationRunning || s.Target != "hv2" {
		t.Errorf("first: %+v, want Running to hv2", s)
	}
	if s := status(t, client, "second"); s.Phase != v1alpha1.MigrationFailed || !strings.Contains(s.Reason, "migration first is moving this VM already") {
		t.Errorf("second: %+v, want Failed because first moves the VM", s)
	}
}

func TestNoTargetYetWaitsInSchedulingThenFails(t *testing.T) {
	c, client := controller(t, hypervisor("hv1", metav1.ConditionTrue), runningVM("a", "hv1"),
		migration("recent", "a", now.Add(-time.Minute)))
	if err := c.sync(context.Background(), "ns/recent"); err != nil {
		t.Fatal(err)
	}
	s := status(t, client, "recent")
	if s.Phase != v1alpha1.MigrationScheduling || !strings.Contains(s.Reason, "no other hypervisor accepts migrations") || s.Source != "hv1" {
		t.Errorf("recent: %+v, want Scheduling from hv1 with the scheduler's reason", s)
	}

	c, client = controller(t, hypervisor("hv1", metav1.ConditionTrue), runningVM("a", "hv1"),
		migration("old", "a", now.Add(-scheduleTimeout)))
	if err := c.sync(context.Background(), "ns/old"); err != nil {
		t.Fatal(err)
	}
	if s := status(t, client, "old"); s.Phase != v1alpha1.MigrationFailed || !strings.Contains(s.Reason, "no other hypervisor accepts migrations, for 5m0s") {
		t.Errorf("old: %+v, want Failed after the scheduling timeout", s)
	}
}

func TestAMissingTargetFailsAtOnce(t *testing.T) {
	m := migration("to-nowhere", "a", now)
	m.Spec.TargetHypervisor = "hv9"
	c, client := controller(t, hypervisor("hv1", metav1.ConditionTrue), hypervisor("hv2", metav1.ConditionTrue), runningVM("a", "hv1"), m)
	if err := c.sync(context.Background(), "ns/to-nowhere"); err != nil {
		t.Fatal(err)
	}
	if s := status(t, client, "to-nowhere"); s.Phase != v1alpha1.MigrationFailed || !strings.Contains(s.Reason, "hypervisor hv9 does not exist") {
		t.Errorf("%+v, want Failed: hv9 does not exist", s)
	}
}

func TestASourceThatIsNotReadyIsWaitedFor(t *testing.T) {
	c, client := controller(t, hypervisor("hv1", metav1.ConditionUnknown), hypervisor("hv2", metav1.ConditionTrue),
		runningVM("a", "hv1"), migration("m", "a", now))
	if err := c.sync(context.Background(), "ns/m"); err != nil {
		t.Fatal(err)
	}
	if s := status(t, client, "m"); s.Phase != v1alpha1.MigrationScheduling || !strings.Contains(s.Reason, "source hypervisor hv1 is not ready: the agent has not reported for more than 40s") {
		t.Errorf("%+v, want Scheduling until the source is Ready", s)
	}
}

func TestARunningMigrationNoAgentTakesOnFails(t *testing.T) {
	started := func(name string, at time.Time, accepted bool) *v1alpha1.VirtualMachineMigration {
		m := migration(name, "a", at)
		start := metav1.NewTime(at)
		m.Status = v1alpha1.VirtualMachineMigrationStatus{Phase: v1alpha1.MigrationRunning, VirtualMachineUID: "uid-a", Source: "hv1", Target: "hv2", StartTime: &start}
		if accepted {
			m.Status.AcceptedTime = &start
		}
		return m
	}
	c, client := controller(t, hypervisor("hv1", metav1.ConditionUnknown), hypervisor("hv2", metav1.ConditionTrue), runningVM("a", "hv1"),
		started("unanswered", now.Add(-acceptTimeout), false),
		started("just-started", now.Add(-time.Second), false),
		started("taken-on", now.Add(-time.Hour), true))
	for _, name := range []string{"unanswered", "just-started", "taken-on"} {
		if err := c.sync(context.Background(), "ns/"+name); err != nil {
			t.Fatal(err)
		}
	}
	if s := status(t, client, "unanswered"); s.Phase != v1alpha1.MigrationFailed || !strings.Contains(s.Reason, "the agent of hypervisor hv1 did not take the migration on within 30s; the guest stays there (hypervisor hv1 is not ready: the agent has not reported for more than 40s)") {
		t.Errorf("unanswered: %+v, want Failed for want of the source agent", s)
	}
	for _, name := range []string{"just-started", "taken-on"} {
		if s := status(t, client, name); s.Phase != v1alpha1.MigrationRunning {
			t.Errorf("%s: %+v, want still Running", name, s)
		}
	}
}

// The record of a started migration goes once the cache shows it over,
// so the controller keeps none for VMs that moved long ago.
func TestAStartedMigrationIsForgottenWhenOver(t *testing.T) {
	done := migration("done", "a", now)
	done.Status = v1alpha1.VirtualMachineMigrationStatus{Phase: v1alpha1.MigrationFailed, VirtualMachineUID: "uid-a"}
	c, _ := controller(t, runningVM("a", "hv1"), done)
	c.started["uid-a"] = "done"
	if err := c.sync(context.Background(), "ns/done"); err != nil {
		t.Fatal(err)
	}
	if len(c.started) != 0 {
		t.Errorf("started %v after the migration failed, want it forgotten", c.started)
	}
}
