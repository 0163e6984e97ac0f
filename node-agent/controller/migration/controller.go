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

// Package migration is the node agent's migration controller: both ends of
// a VirtualMachineMigration. As the source it prepares the target over the
// migration proxy, opens the tunnel, runs libvirt's peer-to-peer migration
// with disk copy while holding the VM's lock, reports progress and the
// outcome, and removes what is left of the guest here once it runs on the
// target. As the target it serves the proxy to the source's agent of a
// Running migration only, and removes an incoming guest of a migration
// that failed. The VM controller leaves a VM alone while a migration from
// this hypervisor runs or has succeeded and the VM is not handed over yet.
//
// Crash points: the source writes a marker file before libvirt starts. A
// source agent that finds its marker for a Running migration it is not
// running looks at the domain: gone or shut off as migrated means the
// guest moved (Succeeded); still active means it stayed (Failed). Its
// tunnel died with it, so libvirt cannot finish a migration behind its
// back.
package migration

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	vesselinformers "github.com/vessel-vm/vessel/generated/informers/externalversions/vessel/v1alpha1"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/boundvm"
	"github.com/vessel-vm/vessel/node-agent/controller/worker"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/migrationproxy"
	"github.com/vessel-vm/vessel/node-agent/network"
)

// Config are the controller's settings.
type Config struct {
	// Node is this hypervisor's name.
	Node string
	// StateDir holds the per-VM files (vms/<uid>/).
	StateDir string
	// Netns is the hypervisor's network namespace (path; empty: the
	// agent's own).
	Netns string
	// BandwidthMiBs caps each migration's memory stream (0: unlimited).
	BandwidthMiBs uint64
}

// Identity is this agent's Hypervisor.
type Identity interface{ HypervisorUID() string }

// Deps are the controller's collaborators.
type Deps struct {
	Client     versioned.Interface
	Migrations vesselinformers.VirtualMachineMigrationInformer
	// VMs lists the VMs bound to this node.
	VMs        listers.VirtualMachineLister
	Hypervisor hypervisor.Hypervisor
	Locks      *boundvm.Locks
	Identity   Identity
	Network    *network.Manager
	Creds      migrationproxy.Credentials
	Recorder   record.EventRecorder
	Clock      clock.PassiveClock
	// VMChanged asks the VM controller for a pass over a VM (key).
	VMChanged func(key string)
}

// Controller runs this hypervisor's ends of migrations.
type Controller struct {
	cfg        Config
	client     versioned.Interface
	migrations listers.VirtualMachineMigrationLister
	synced     cache.InformerSynced
	vms        listers.VirtualMachineLister
	hv         hypervisor.Hypervisor
	mig        hypervisor.Migrator
	locks      *boundvm.Locks
	identity   Identity
	network    *network.Manager
	creds      migrationproxy.Credentials
	recorder   record.EventRecorder
	clock      clock.PassiveClock
	vmChanged  func(string)
	queue      *worker.Queue

	mu sync.Mutex
	// running are the migrations this agent is sending, by key, with the
	// VM UID they move.
	running map[string]*run
	// gone are deleted migrations this node was an end of, by key.
	gone map[string]*v1alpha1.VirtualMachineMigration
}

// run is one migration being sent.
type run struct {
	uid    string
	cancel context.CancelFunc
}

// New builds the controller; start the informer before Run.
func New(cfg Config, deps Deps) (*Controller, error) {
	mig, ok := deps.Hypervisor.(hypervisor.Migrator)
	if !ok {
		return nil, fmt.Errorf("the hypervisor cannot migrate domains")
	}
	c := &Controller{
		cfg:        cfg,
		client:     deps.Client,
		migrations: deps.Migrations.Lister(),
		synced:     deps.Migrations.Informer().HasSynced,
		vms:        deps.VMs,
		hv:         deps.Hypervisor,
		mig:        mig,
		locks:      deps.Locks,
		identity:   deps.Identity,
		network:    deps.Network,
		creds:      deps.Creds,
		recorder:   deps.Recorder,
		clock:      deps.Clock,
		vmChanged:  deps.VMChanged,
		queue:      worker.NewQueue("vessel-agent-migrations"),
		running:    map[string]*run{},
		gone:       map[string]*v1alpha1.VirtualMachineMigration{},
	}
	onDelete := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		m, ok := obj.(*v1alpha1.VirtualMachineMigration)
		if !ok || (m.Status.Source != cfg.Node && m.Status.Target != cfg.Node) {
			return
		}
		key := m.Namespace + "/" + m.Name
		c.mu.Lock()
		c.gone[key] = m
		c.mu.Unlock()
		c.queue.Add(key)
	}
	h := worker.Handler(c.queue.Enqueue)
	h.DeleteFunc = onDelete
	if _, err := deps.Migrations.Informer().AddEventHandler(h); err != nil {
		return nil, fmt.Errorf("add migration event handler: %w", err)
	}
	return c, nil
}

// Run syncs migrations until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.queue.Run(ctx, workers, c.sync)
}

func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	m, err := c.migrations.VirtualMachineMigrations(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, c.deleted(ctx, key)
	}
	if err != nil {
		return 0, err
	}
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithValues("migration", key, "vm", ns+"/"+m.Spec.VirtualMachineName))
	switch c.cfg.Node {
	case m.Status.Source:
		return c.syncSource(ctx, m.DeepCopy())
	case m.Status.Target:
		return 0, c.syncTarget(ctx, m)
	}
	return 0, nil
}

// deleted aborts a deleted migration this agent sends (the guest stays
// here) and, on the target, removes what it prepared.
func (c *Controller) deleted(ctx context.Context, key string) error {
	c.mu.Lock()
	r := c.running[key]
	m := c.gone[key]
	delete(c.gone, key)
	c.mu.Unlock()
	if r != nil {
		klog.FromContext(ctx).Info("Migration deleted while running: aborting it", "migration", key)
		if err := c.mig.AbortMigration(ctx, r.uid); err != nil {
			return err
		}
		r.cancel()
	}
	if m != nil && m.Status.Target == c.cfg.Node && m.Status.Phase != v1alpha1.MigrationSucceeded {
		return c.removeIncoming(ctx, m)
	}
	return nil
}

// Holds says a migration from this node keeps the VM controller away from
// vm: it runs, or it succeeded and has not handed the VM over yet (a
// handed-over one no longer counts, even when the VM has come back here).
func Holds(migrations listers.VirtualMachineMigrationLister, node string, vm *v1alpha1.VirtualMachine) bool {
	list, err := migrations.VirtualMachineMigrations(vm.Namespace).List(labelsEverything)
	if err != nil {
		return false
	}
	for _, m := range list {
		if m.Spec.VirtualMachineName != vm.Name || m.Status.VirtualMachineUID != string(vm.UID) || m.Status.Source != node {
			continue
		}
		// A VM deleted before its handover is not held: it cannot be
		// bound any more, and its guest on the target goes as an orphan.
		if m.Status.Phase == v1alpha1.MigrationRunning || (m.Status.Phase == v1alpha1.MigrationSucceeded && !m.Status.HandedOver && vm.Spec.NodeName == node && vm.DeletionTimestamp == nil) {
			return true
		}
	}
	return false
}

// Incoming says a migration is bringing the guest with domain UUID uid to
// node: it runs, or it succeeded and the VM is not handed over yet (the
// migration goes with its VM).
func Incoming(migrations listers.VirtualMachineMigrationLister, node, uid string) bool {
	list, err := migrations.List(labelsEverything)
	if err != nil {
		return true // unsure: leave the domain alone
	}
	for _, m := range list {
		if m.Status.VirtualMachineUID == uid && m.Status.Target == node &&
			(m.Status.Phase == v1alpha1.MigrationRunning || (m.Status.Phase == v1alpha1.MigrationSucceeded && !m.Status.HandedOver)) {
			return true
		}
	}
	return false
}

func (c *Controller) vmDir(uid string) string { return filepath.Join(c.cfg.StateDir, "vms", uid) }

// updateStatus writes m's status, applying change to the latest copy on a
// conflict.
func (c *Controller) updateStatus(ctx context.Context, m *v1alpha1.VirtualMachineMigration, change func(*v1alpha1.VirtualMachineMigrationStatus)) error {
	for range 5 {
		cur := m.DeepCopy()
		change(&cur.Status)
		_, err := c.client.VesselV1alpha1().VirtualMachineMigrations(m.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			if err != nil {
				return fmt.Errorf("update status of migration %s/%s: %w", m.Namespace, m.Name, err)
			}
			return nil
		}
		latest, err := c.client.VesselV1alpha1().VirtualMachineMigrations(m.Namespace).Get(ctx, m.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read migration %s/%s: %w", m.Namespace, m.Name, err)
		}
		m = latest
	}
	return fmt.Errorf("update status of migration %s/%s: too many conflicts", m.Namespace, m.Name)
}
