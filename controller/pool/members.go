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

package pool

import (
	"sort"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// member is one VM of a pool, or a clone of the pool that has not created
// its VM yet.
type member struct {
	name string
	// vm is nil while the clone making it has not created it.
	vm *v1alpha1.VirtualMachine
	// clone made the VM; nil for a VM booted from the template.
	clone *v1alpha1.VirtualMachineClone
	// placeholder is a member just made that the caches do not show yet.
	placeholder bool
}

// ready says a warm member is resumed from memory and paused: handing it
// out only unpauses it.
func (m member) ready() bool {
	return m.vm != nil && m.vm.Status.Phase == v1alpha1.VirtualMachinePaused &&
		(m.clone == nil || m.clone.Status.Phase == v1alpha1.CloneSucceeded)
}

// running says the member's guest runs.
func (m member) running() bool {
	return m.vm != nil && m.vm.Status.Phase == v1alpha1.VirtualMachineRunning
}

// inFlight says the member is still being made.
func (m member) inFlight() bool {
	if m.placeholder {
		return true
	}
	if m.clone != nil {
		return m.clone.Status.Phase != v1alpha1.CloneSucceeded
	}
	return m.vm == nil || m.vm.Status.Phase == "" || m.vm.Status.Phase == v1alpha1.VirtualMachinePending
}

// members is a pool's VMs by role.
type members struct {
	replicas, warm []member
	// failed are the pool's clones that failed.
	failed []*v1alpha1.VirtualMachineClone
	// done are clones that succeeded and whose VM is gone.
	done []*v1alpha1.VirtualMachineClone
}

func (ms members) inFlight() int {
	n := 0
	for _, m := range append(append([]member{}, ms.replicas...), ms.warm...) {
		if m.inFlight() {
			n++
		}
	}
	return n
}

// members reads the pool's VMs and clones from the caches.
func (c *Controller) members(pool *v1alpha1.VirtualMachinePool) (members, error) {
	var ms members
	vms, err := c.vms.VirtualMachines(pool.Namespace).List(labels.SelectorFromSet(labels.Set{v1alpha1.LabelPool: pool.Name}))
	if err != nil {
		return ms, err
	}
	clones, err := c.clones.VirtualMachineClones(pool.Namespace).List(labels.Everything())
	if err != nil {
		return ms, err
	}
	byTarget := map[string]*v1alpha1.VirtualMachineClone{}
	for _, cl := range clones {
		if ownedBy(cl, pool) {
			byTarget[cl.Spec.Target.Name] = cl
		}
	}
	seen := map[string]bool{}
	roles := map[string]string{}
	add := func(role string, m member) {
		roles[m.name] = role
		if role == v1alpha1.PoolMemberWarm {
			ms.warm = append(ms.warm, m)
		} else {
			ms.replicas = append(ms.replicas, m)
		}
	}
	for _, vm := range vms {
		if !ownedBy(vm, pool) {
			continue
		}
		seen[vm.Name] = true
		if vm.DeletionTimestamp != nil {
			continue
		}
		add(vm.Labels[v1alpha1.LabelPoolMember], member{name: vm.Name, vm: vm, clone: byTarget[vm.Name]})
	}
	for name, cl := range byTarget {
		switch {
		case cl.Status.Phase == v1alpha1.CloneFailed:
			ms.failed = append(ms.failed, cl)
		case seen[name]:
		case cl.Status.Phase == v1alpha1.CloneSucceeded:
			ms.done = append(ms.done, cl)
		case cl.DeletionTimestamp == nil:
			add(cl.Spec.Target.Labels[v1alpha1.LabelPoolMember], member{name: name, clone: cl})
		}
	}
	c.expected.apply(pool.Namespace+"/"+pool.Name, &ms, roles, c.now())
	for _, list := range [][]member{ms.replicas, ms.warm} {
		sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
	}
	return ms, nil
}
