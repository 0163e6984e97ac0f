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
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/boundvm"
)

// sync makes the VM's domain match its spec and rewrites its status:
// observe, decide, act, report. It returns how soon to look again when
// something is in flight.
func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.vms.VirtualMachines(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.dropState(key)
		c.expected.Forget(key)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if cached.Spec.NodeName != c.cfg.Node {
		return 0, nil
	}
	if !c.expected.Satisfied(key, cached) {
		// The informer has not delivered this controller's last status
		// write yet; acting on the older status could repeat a start.
		return staleCacheRetry, nil
	}
	release, ok := c.lockForSync(key, cached)
	if !ok {
		return boundvm.BusyRetry, nil
	}
	defer release()
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithValues("vm", key))

	st := c.state(key, string(cached.UID))
	o, err := c.observe(ctx, cached, st)
	if err != nil {
		return 0, err
	}
	d := decide(o)
	out, err := c.act(ctx, key, o, &d, st)
	if err != nil || !d.Report {
		return out.requeue, err
	}
	return c.report(ctx, key, o, &d, out, st)
}

// lockForSync takes the VM's lock for a pass. While a restore of the VM is
// InProgress the controller stays away even between the restore's attempts
// (after an agent restart, say), so it never starts or stops a guest being
// reverted; a VM being deleted is not held back. Nor does it touch a VM
// whose guest a migration from this node holds.
func (c *Controller) lockForSync(key string, vm *v1alpha1.VirtualMachine) (func(), bool) {
	if vm.DeletionTimestamp == nil && c.restoreInProgress(vm) {
		return nil, false
	}
	// A guest being moved, or moved and not handed over yet, is the
	// migration's: starting it again here would make two.
	if c.migrationHolds != nil && c.migrationHolds(vm) {
		return nil, false
	}
	return c.locks.TryLock(key)
}

// restoreInProgress says a restore made for vm is reverting its domain.
func (c *Controller) restoreInProgress(vm *v1alpha1.VirtualMachine) bool {
	if c.restores == nil {
		return false
	}
	restores, err := c.restores.VirtualMachineRestores(vm.Namespace).List(labels.Everything())
	if err != nil {
		return false
	}
	for _, r := range restores {
		if r.Spec.VirtualMachineName == vm.Name && r.Status.Phase == v1alpha1.SnapshotInProgress && boundvm.OwnedBy(r, vm.UID) {
			return true
		}
	}
	return false
}
