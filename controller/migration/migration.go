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

// Package migration is the vessel-apiserver's migration controller. For a
// new VirtualMachineMigration it checks the VM can move (bound, guest
// running, no other migration of it under way), has the scheduler pick the
// target, and hands the migration to the source hypervisor's agent (phase
// Running), which moves the guest with the target's agent. When that agent
// reports Succeeded the controller rebinds the VM to the target: the only
// way a bound VM changes hypervisor. Until then the VM stays bound to the
// source, whose agent leaves its domain alone, and the target's agent
// does not sync it: never do two agents own the guest.
package migration

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/controller/scheduler"
	snapshotcontroller "github.com/vessel-vm/vessel/controller/snapshot"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

const (
	// scheduleTimeout is how long a migration waits for a target that
	// fits and a Ready source before it fails.
	scheduleTimeout = 5 * time.Minute
	// scheduleRetry is how often a waiting migration looks again.
	scheduleRetry = 5 * time.Second
	// acceptTimeout is how long the source's agent has to take a started
	// migration on (it does within a second when it runs).
	acceptTimeout = 30 * time.Second
)

// Controller starts migrations and hands their VMs over when they succeed.
type Controller struct {
	client      versioned.Interface
	migrations  listers.VirtualMachineMigrationLister
	vms         listers.VirtualMachineLister
	snapshots   listers.VirtualMachineSnapshotLister
	hypervisors listers.HypervisorLister
	synced      []cache.InformerSynced
	queue       workqueue.TypedRateLimitingInterface[string]
	now         func() time.Time

	// started maps the UID of each VM this controller sent moving to its
	// migration, until the cache shows that migration over: two
	// migrations of one VM created together must not both start because
	// the cache had not seen the first one Running yet. Only the one
	// worker touches it.
	started map[string]string
}

// New wires a controller to the shared informers; call Run after starting them.
func New(client versioned.Interface, factory informers.SharedInformerFactory) (*Controller, error) {
	v := factory.Vessel().V1alpha1()
	c := &Controller{
		client:      client,
		migrations:  v.VirtualMachineMigrations().Lister(),
		vms:         v.VirtualMachines().Lister(),
		snapshots:   v.VirtualMachineSnapshots().Lister(),
		hypervisors: v.Hypervisors().Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "vessel-migrations"}),
		now:     time.Now,
		started: map[string]string{},
	}
	c.synced = []cache.InformerSynced{
		v.VirtualMachineMigrations().Informer().HasSynced, v.VirtualMachines().Informer().HasSynced,
		v.VirtualMachineSnapshots().Informer().HasSynced, v.Hypervisors().Informer().HasSynced,
	}
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	if _, err := v.VirtualMachineMigrations().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return nil, fmt.Errorf("watch migrations: %w", err)
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
		for c.next(ctx) {
		}
	}, time.Second)
	<-ctx.Done()
}

func (c *Controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.sync(ctx, key); err != nil {
		klog.FromContext(ctx).Error(err, "Syncing migration", "migration", key)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	cached, err := c.migrations.VirtualMachineMigrations(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	m := cached.DeepCopy()
	if over(m) && c.started[m.Status.VirtualMachineUID] == m.Name {
		delete(c.started, m.Status.VirtualMachineUID)
	}
	switch m.Status.Phase {
	case "", v1alpha1.MigrationPending, v1alpha1.MigrationScheduling:
		if m.DeletionTimestamp != nil {
			return nil
		}
		return c.start(ctx, m)
	case v1alpha1.MigrationRunning:
		return c.checkAccepted(ctx, m)
	case v1alpha1.MigrationSucceeded:
		return c.handOver(ctx, m)
	}
	return nil
}

// checkAccepted fails a running migration the source's agent has not
// taken on in acceptTimeout (it is down, or cut off): the write carries
// the resourceVersion the agent's acceptance would change, so exactly
// one of them wins, and an agent never takes a failed migration on.
func (c *Controller) checkAccepted(ctx context.Context, m *v1alpha1.VirtualMachineMigration) error {
	if m.Status.AcceptedTime != nil || m.Status.StartTime == nil || m.DeletionTimestamp != nil {
		return nil
	}
	if left := acceptTimeout - c.now().Sub(m.Status.StartTime.Time); left > 0 {
		c.queue.AddAfter(m.Namespace+"/"+m.Name, left)
		return nil
	}
	reason := fmt.Sprintf("the agent of hypervisor %s did not take the migration on within %v; the guest stays there", m.Status.Source, acceptTimeout)
	if down := c.sourceDown(m.Status.Source); down != "" {
		reason += " (" + down + ")"
	}
	err := c.fail(ctx, m, reason)
	if apierrors.IsConflict(err) {
		// The agent took it on, or something else changed it: the
		// informer brings the new version.
		return nil
	}
	return err
}

// sourceDown says why the agent of hypervisor name is down, or "" when
// its Hypervisor is Ready (the snapshot controller's test).
func (c *Controller) sourceDown(name string) string {
	hv, err := c.hypervisors.Get(name)
	if err != nil {
		hv = nil
	}
	_, msg := snapshotcontroller.Blocked(&v1alpha1.VirtualMachine{Spec: v1alpha1.VirtualMachineSpec{NodeName: name}}, hv)
	return msg
}

// start checks the VM can move, picks the target and hands the migration
// to the source's agent, or fails it with the reason.
func (c *Controller) start(ctx context.Context, m *v1alpha1.VirtualMachineMigration) error {
	vm, err := c.vms.VirtualMachines(m.Namespace).Get(m.Spec.VirtualMachineName)
	if apierrors.IsNotFound(err) {
		return c.fail(ctx, m, "the VM does not exist")
	}
	if err != nil {
		return err
	}
	if reason := c.cannotMove(m, vm); reason != "" {
		return c.fail(ctx, m, reason)
	}
	hvs, err := c.hypervisors.List(labels.Everything())
	if err != nil {
		return err
	}
	all, err := c.vms.List(labels.Everything())
	if err != nil {
		return err
	}
	target, why := scheduler.PickMigrationTarget(vm, hvs, all, m.Spec.TargetHypervisor)
	if target == "" {
		if m.Spec.TargetHypervisor != "" && !slices.ContainsFunc(hvs, func(hv *v1alpha1.Hypervisor) bool { return hv.Name == m.Spec.TargetHypervisor }) {
			return c.fail(ctx, m, "no target hypervisor: "+why)
		}
		return c.wait(ctx, m, vm, "no target hypervisor yet: "+why)
	}
	if down := c.sourceDown(vm.Spec.NodeName); down != "" {
		return c.wait(ctx, m, vm, "source "+down)
	}
	now := metav1.NewTime(c.now())
	m.Status = v1alpha1.VirtualMachineMigrationStatus{
		Phase:             v1alpha1.MigrationRunning,
		VirtualMachineUID: string(vm.UID),
		Source:            vm.Spec.NodeName,
		Target:            target,
		StartTime:         &now,
	}
	if _, err := c.client.VesselV1alpha1().VirtualMachineMigrations(m.Namespace).UpdateStatus(ctx, m, metav1.UpdateOptions{}); err != nil {
		return err
	}
	c.started[string(vm.UID)] = m.Name
	c.queue.AddAfter(m.Namespace+"/"+m.Name, acceptTimeout)
	return nil
}

// wait keeps m Scheduling, saying why, until scheduleTimeout after its
// creation, then fails it.
func (c *Controller) wait(ctx context.Context, m *v1alpha1.VirtualMachineMigration, vm *v1alpha1.VirtualMachine, why string) error {
	if c.now().Sub(m.CreationTimestamp.Time) >= scheduleTimeout {
		return c.fail(ctx, m, fmt.Sprintf("%s, for %v", why, scheduleTimeout))
	}
	c.queue.AddAfter(m.Namespace+"/"+m.Name, scheduleRetry)
	if m.Status.Phase == v1alpha1.MigrationScheduling && m.Status.Reason == why {
		return nil
	}
	m.Status.Phase, m.Status.Reason = v1alpha1.MigrationScheduling, why
	m.Status.VirtualMachineUID, m.Status.Source = string(vm.UID), vm.Spec.NodeName
	_, err := c.client.VesselV1alpha1().VirtualMachineMigrations(m.Namespace).UpdateStatus(ctx, m, metav1.UpdateOptions{})
	return err
}

// cannotMove says why vm cannot be moved by m now, or "".
func (c *Controller) cannotMove(m *v1alpha1.VirtualMachineMigration, vm *v1alpha1.VirtualMachine) string {
	switch {
	case vm.DeletionTimestamp != nil:
		return "the VM is being deleted"
	case vm.Spec.NodeName == "":
		return "the VM is not bound to a hypervisor yet"
	case vm.Status.Phase != v1alpha1.VirtualMachineRunning:
		return fmt.Sprintf("only a running guest can be live-migrated; the VM is %s", vm.Status.Phase)
	}
	for _, d := range vm.Spec.Disks {
		if d.HostPath != nil && !d.ReadOnly {
			return fmt.Sprintf("disk %s is a writable hostPath file, which stays on its hypervisor", d.Name)
		}
	}
	if other, ok := c.started[string(vm.UID)]; ok && other != m.Name {
		o, err := c.migrations.VirtualMachineMigrations(m.Namespace).Get(other)
		switch {
		case apierrors.IsNotFound(err), err == nil && over(o):
			delete(c.started, string(vm.UID))
		default:
			return fmt.Sprintf("migration %s is moving this VM already", other)
		}
	}
	others, err := c.migrations.VirtualMachineMigrations(m.Namespace).List(labels.Everything())
	if err == nil {
		for _, o := range others {
			if o.Name != m.Name && o.Spec.VirtualMachineName == vm.Name && o.Status.Phase == v1alpha1.MigrationRunning {
				return fmt.Sprintf("migration %s is moving this VM already", o.Name)
			}
			if o.Name != m.Name && o.Status.VirtualMachineUID == string(vm.UID) && o.Status.Phase == v1alpha1.MigrationSucceeded && !o.Status.HandedOver {
				return fmt.Sprintf("migration %s has moved this VM and is still handing it over; try again in a moment", o.Name)
			}
		}
	}
	// libvirt refuses to migrate a domain with snapshots (their metadata
	// would not follow it), and internal snapshots live in the qcow2 files
	// the copy does not carry.
	snaps, err := c.snapshots.VirtualMachineSnapshots(m.Namespace).List(labels.Everything())
	if err == nil {
		var names []string
		for _, s := range snaps {
			if s.Spec.VirtualMachineName == vm.Name && s.Status.VirtualMachineUID == string(vm.UID) {
				names = append(names, s.Name)
			}
		}
		if len(names) > 0 {
			return fmt.Sprintf("the VM has snapshots %v, which libvirt cannot migrate: delete them first", names)
		}
	}
	return ""
}

// over says m has nothing left to do with its VM.
func over(m *v1alpha1.VirtualMachineMigration) bool {
	return m.Status.Phase == v1alpha1.MigrationFailed || (m.Status.Phase == v1alpha1.MigrationSucceeded && m.Status.HandedOver)
}

func (c *Controller) fail(ctx context.Context, m *v1alpha1.VirtualMachineMigration, reason string) error {
	now := metav1.NewTime(c.now())
	m.Status.Phase, m.Status.Reason, m.Status.EndTime = v1alpha1.MigrationFailed, reason, &now
	_, err := c.client.VesselV1alpha1().VirtualMachineMigrations(m.Namespace).UpdateStatus(ctx, m, metav1.UpdateOptions{})
	return err
}

// handOver binds the VM of a succeeded migration to the target, unless it
// is there already. The binding names the migration: the server checks it
// succeeded from the VM's hypervisor to that target.
func (c *Controller) handOver(ctx context.Context, m *v1alpha1.VirtualMachineMigration) error {
	vm, err := c.vms.VirtualMachines(m.Namespace).Get(m.Spec.VirtualMachineName)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if m.Status.HandedOver || string(vm.UID) != m.Status.VirtualMachineUID {
		return nil
	}
	switch vm.Spec.NodeName {
	case m.Status.Target:
		// Bound before a lost status write: record it.
		return c.markHandedOver(ctx, m)
	case m.Status.Source:
	default:
		return nil
	}
	binding := &v1alpha1.VirtualMachineBinding{
		ObjectMeta: metav1.ObjectMeta{
			Name: vm.Name, UID: vm.UID,
			Annotations: map[string]string{v1alpha1.AnnotationMigration: m.Name},
		},
		Target: m.Status.Target,
	}
	_, err = c.client.VesselV1alpha1().VirtualMachines(vm.Namespace).Bind(ctx, vm.Name, binding, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("bind VM %s/%s to %s after migration %s: %w", vm.Namespace, vm.Name, m.Status.Target, m.Name, err)
	}
	klog.FromContext(ctx).Info("VM handed over after its migration", "vm", vm.Namespace+"/"+vm.Name, "from", m.Status.Source, "to", m.Status.Target, "migration", m.Name)
	return c.markHandedOver(ctx, m)
}

// markHandedOver records that m's VM was bound to its target, so that m
// never binds it again: the VM may move on, back to m's source even, and
// a later sync of m must not pull it to m's target.
func (c *Controller) markHandedOver(ctx context.Context, m *v1alpha1.VirtualMachineMigration) error {
	m = m.DeepCopy()
	m.Status.HandedOver = true
	if _, err := c.client.VesselV1alpha1().VirtualMachineMigrations(m.Namespace).UpdateStatus(ctx, m, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("record the handover of migration %s/%s: %w", m.Namespace, m.Name, err)
	}
	return nil
}
