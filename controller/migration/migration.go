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
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
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
	switch m.Status.Phase {
	case "", v1alpha1.MigrationPending, v1alpha1.MigrationScheduling:
		if m.DeletionTimestamp != nil {
			return nil
		}
		return c.start(ctx, m)
	case v1alpha1.MigrationSucceeded:
		return c.handOver(ctx, m)
	}
	return nil
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
		return c.fail(ctx, m, "no target hypervisor: "+why)
	}
	now := metav1.Now()
	m.Status = v1alpha1.VirtualMachineMigrationStatus{
		Phase:             v1alpha1.MigrationRunning,
		VirtualMachineUID: string(vm.UID),
		Source:            vm.Spec.NodeName,
		Target:            target,
		StartTime:         &now,
	}
	_, err = c.client.VesselV1alpha1().VirtualMachineMigrations(m.Namespace).UpdateStatus(ctx, m, metav1.UpdateOptions{})
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

func (c *Controller) fail(ctx context.Context, m *v1alpha1.VirtualMachineMigration, reason string) error {
	now := metav1.Now()
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
