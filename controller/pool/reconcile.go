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
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// reconcile moves the pool toward its spec and returns what keeps it from
// getting there ("" when nothing does), for the ReplicaFailure condition.
func (c *Controller) reconcile(ctx context.Context, pool *v1alpha1.VirtualMachinePool, ms members) string {
	var problems []string
	note := func(err error) {
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	// A failed clone says why; it goes (its VM went with it) and another
	// is made in its place.
	for _, cl := range ms.failed {
		problems = append(problems, fmt.Sprintf("clone %s failed: %s", cl.Name, cl.Status.Error))
		note(c.deleteClone(ctx, cl))
	}
	for _, cl := range ms.done {
		note(c.deleteClone(ctx, cl))
	}
	warm := pool.Spec.Warm
	source := ""
	if warm != nil {
		source = c.warmSnapshotProblem(pool)
		if source != "" {
			problems = append(problems, source)
		}
	}
	budget := maxInFlight - ms.inFlight()

	need := int(*pool.Spec.Replicas) - len(ms.replicas)
	if need > 0 && warm != nil {
		// Ready warm clones first, then those still being made.
		candidates := append([]member{}, ms.warm...)
		sort.SliceStable(candidates, func(i, j int) bool { return candidates[i].ready() && !candidates[j].ready() })
		for _, m := range candidates {
			if need == 0 {
				break
			}
			if err := c.handOut(ctx, pool, m); err != nil {
				if !errors.Is(err, errNotYet) {
					note(err)
				}
				continue
			}
			ms.warm = remove(ms.warm, m.name)
			need--
		}
	}
	for ; need > 0 && budget > 0; need-- {
		if warm != nil && source != "" {
			break
		}
		note(c.make(ctx, pool, v1alpha1.PoolMemberReplica))
		budget--
	}
	if need < 0 {
		for _, m := range surplus(ms.replicas, -need) {
			note(c.deleteMember(ctx, pool, m))
		}
	}

	if warm != nil {
		have := len(ms.warm)
		for ; have < int(warm.Ready) && budget > 0 && source == ""; have++ {
			note(c.make(ctx, pool, v1alpha1.PoolMemberWarm))
			budget--
		}
		if have > int(warm.Ready) {
			for _, m := range surplus(ms.warm, have-int(warm.Ready)) {
				note(c.deleteMember(ctx, pool, m))
			}
		}
	} else {
		for _, m := range ms.warm {
			note(c.deleteMember(ctx, pool, m)) // warm dropped from the spec
		}
	}
	return strings.Join(problems, "; ")
}

func remove(list []member, name string) []member {
	out := list[:0:0]
	for _, m := range list {
		if m.name != name {
			out = append(out, m)
		}
	}
	return out
}

// surplus picks n members to delete: those not running first (they cost
// least to lose), then the newest.
func surplus(list []member, n int) []member {
	c := append([]member{}, list...)
	sort.SliceStable(c, func(i, j int) bool {
		if c[i].running() != c[j].running() {
			return !c[i].running()
		}
		return created(c[i]).After(created(c[j]).Time)
	})
	return c[:min(n, len(c))]
}

func created(m member) metav1.Time {
	switch {
	case m.vm != nil:
		return m.vm.CreationTimestamp
	case m.clone != nil:
		return m.clone.CreationTimestamp
	}
	return metav1.Time{}
}

// warmSnapshotProblem says why the warm snapshot cannot be cloned, "" when
// it can.
func (c *Controller) warmSnapshotProblem(pool *v1alpha1.VirtualMachinePool) string {
	name := pool.Spec.Warm.SnapshotName
	snap, err := c.snaps.VirtualMachineSnapshots(pool.Namespace).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("snapshot %s does not exist: no new clones can be made (the pool's VMs keep running on its data)", name)
	case err != nil:
		return err.Error()
	case snap.DeletionTimestamp != nil:
		return fmt.Sprintf("snapshot %s is being deleted: no new clones can be made (the pool's VMs keep running on its data)", name)
	case !snap.Status.ReadyToUse:
		return fmt.Sprintf("snapshot %s is not ready to use (phase %s)", name, snap.Status.Phase)
	case !snap.Status.MemoryIncluded:
		return fmt.Sprintf("snapshot %s holds no memory: warm pools resume clones from memory", name)
	}
	return ""
}

// errNotYet says a warm clone cannot be handed out before its VM exists.
var errNotYet = errors.New("the warm clone has no VM yet")

// handOut turns a warm clone into a replica: relabelled and unpaused (the
// agent resumes its guest at once if it is ready, or as soon as it is).
func (c *Controller) handOut(ctx context.Context, pool *v1alpha1.VirtualMachinePool, m member) error {
	if m.vm == nil {
		return errNotYet // its clone has not created the VM yet
	}
	vms := c.client.VesselV1alpha1().VirtualMachines(pool.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		vm, err := vms.Get(ctx, m.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if vm.UID != m.vm.UID {
			return fmt.Errorf("VM %s was replaced", m.name)
		}
		vm.Labels[v1alpha1.LabelPoolMember] = v1alpha1.PoolMemberReplica
		vm.Spec.Paused = false
		_, err = vms.Update(ctx, vm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("hand out warm VM %s: %w", m.name, err)
	}
	c.expected.made(pool.Namespace+"/"+pool.Name, m.name, v1alpha1.PoolMemberReplica, c.now())
	klog.FromContext(ctx).V(2).Info("Handed out a warm VM", "pool", pool.Namespace+"/"+pool.Name, "vm", m.name, "ready", m.ready())
	return nil
}

// make creates one member: a memory clone of the warm snapshot, or a VM
// booted from the template.
func (c *Controller) make(ctx context.Context, pool *v1alpha1.VirtualMachinePool, role string) error {
	lbls := maps.Clone(pool.Spec.Template.Metadata.Labels)
	if lbls == nil {
		lbls = map[string]string{}
	}
	lbls[v1alpha1.LabelPool] = pool.Name
	lbls[v1alpha1.LabelPoolMember] = role
	owner := *metav1.NewControllerRef(pool, v1alpha1.SchemeGroupVersion.WithKind("VirtualMachinePool"))
	name := memberName(pool.Name)
	if pool.Spec.Warm == nil {
		vm := &v1alpha1.VirtualMachine{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: pool.Namespace, Labels: lbls,
				Annotations:     maps.Clone(pool.Spec.Template.Metadata.Annotations),
				OwnerReferences: []metav1.OwnerReference{owner},
			},
			Spec: *pool.Spec.Template.Spec.DeepCopy(),
		}
		if _, err := c.client.VesselV1alpha1().VirtualMachines(pool.Namespace).Create(ctx, vm, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create VM %s: %w", name, err)
		}
		c.expected.made(pool.Namespace+"/"+pool.Name, name, role, c.now())
		return nil
	}
	memory := true
	cl := &v1alpha1.VirtualMachineClone{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: pool.Namespace, OwnerReferences: []metav1.OwnerReference{owner}},
		Spec: v1alpha1.VirtualMachineCloneSpec{
			Source: v1alpha1.CloneSource{SnapshotName: pool.Spec.Warm.SnapshotName},
			Target: v1alpha1.CloneTarget{
				Name: name, Labels: lbls, Annotations: maps.Clone(pool.Spec.Template.Metadata.Annotations),
				Paused: role == v1alpha1.PoolMemberWarm,
			},
			Memory: &memory,
		},
	}
	if _, err := c.client.VesselV1alpha1().VirtualMachineClones(pool.Namespace).Create(ctx, cl, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create clone %s: %w", name, err)
	}
	c.expected.made(pool.Namespace+"/"+pool.Name, name, role, c.now())
	return nil
}

// memberName is a new member's name: the pool's and a random suffix, within
// a DNS label.
func memberName(pool string) string {
	if len(pool) > 57 {
		pool = pool[:57]
	}
	return pool + "-" + utilrand.String(5)
}

func (c *Controller) deleteMember(ctx context.Context, pool *v1alpha1.VirtualMachinePool, m member) error {
	if m.placeholder {
		return nil
	}
	c.expected.deleted(pool.Namespace+"/"+pool.Name, m.name, c.now())
	if m.vm != nil {
		uid := m.vm.UID
		err := c.client.VesselV1alpha1().VirtualMachines(m.vm.Namespace).Delete(ctx, m.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete VM %s: %w", m.name, err)
		}
	}
	if m.clone != nil {
		return c.deleteClone(ctx, m.clone)
	}
	return nil
}

func (c *Controller) deleteClone(ctx context.Context, cl *v1alpha1.VirtualMachineClone) error {
	uid := cl.UID
	err := c.client.VesselV1alpha1().VirtualMachineClones(cl.Namespace).Delete(ctx, cl.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete clone %s: %w", cl.Name, err)
	}
	return nil
}

// writeStatus counts the members and records why the pool falls short.
func (c *Controller) writeStatus(ctx context.Context, pool *v1alpha1.VirtualMachinePool, ms members, problem string) error {
	st := pool.Status.DeepCopy()
	st.Replicas = int32(len(ms.replicas))
	st.RunningReplicas, st.WarmReplicas, st.ReadyWarmReplicas = 0, int32(len(ms.warm)), 0
	for _, m := range ms.replicas {
		if m.running() {
			st.RunningReplicas++
		}
	}
	for _, m := range ms.warm {
		if m.ready() {
			st.ReadyWarmReplicas++
		}
	}
	st.Selector = v1alpha1.LabelPool + "=" + pool.Name + "," + v1alpha1.LabelPoolMember + "=" + v1alpha1.PoolMemberReplica
	st.ObservedGeneration = pool.Generation
	cond := metav1.Condition{Type: v1alpha1.PoolConditionReplicaFailure, Status: metav1.ConditionFalse, Reason: "AsExpected", Message: "", ObservedGeneration: pool.Generation}
	if problem != "" {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, "CannotMakeVMs", truncate(problem, 4096)
	}
	old := meta.FindStatusCondition(st.Conditions, cond.Type)
	if old == nil || old.Status != cond.Status || old.Message != cond.Message || old.ObservedGeneration != cond.ObservedGeneration {
		cond.LastTransitionTime = metav1.NewTime(c.now())
		meta.SetStatusCondition(&st.Conditions, cond)
	}
	if equality.Semantic.DeepEqual(*st, pool.Status) {
		return nil
	}
	updated := pool.DeepCopy()
	updated.Status = *st
	_, err := c.client.VesselV1alpha1().VirtualMachinePools(pool.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // the next event brings it back
	}
	if err != nil {
		return fmt.Errorf("update status of pool %s/%s: %w", pool.Namespace, pool.Name, err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
