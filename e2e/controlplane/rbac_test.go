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

package controlplane

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher"
)

// outcome is what a request must come back with.
type outcome string

const (
	// allowed: 2xx.
	allowed outcome = "allowed"
	// conflict: 409. Authorization passed and the action makes no sense in
	// the VM's state, which only the vessel-apiserver can tell.
	conflict outcome = "409"
	// forbidden: 403.
	forbidden outcome = "forbidden"
	// authorized: any answer but 401 or 403. The console or log of a VM
	// that runs nowhere cannot succeed, but must fail past authorization.
	authorized outcome = "authorized"
)

// access is one request of the matrix: user does verb on resource (with
// its subresource) in namespace ("" for cluster-scoped). Every request
// that needs an object gets a fresh one, made by the admin, so that rows
// do not depend on each other. vm is the run strategy of that VM, for the
// power actions whose sense depends on it.
type access struct {
	user      string
	verb      string
	resource  string
	namespace string
	vm        v1alpha1.RunStrategy
	want      outcome
}

const (
	admin = launcher.AdminKubeconfig
	teamA = "team-a" // alice: edit
	teamB = "team-b" // bob: view
)

// rbacMatrix is who may do what, with the shipped roles (vessel.dev:edit
// and view aggregated into edit and view) and the example tenants.
var rbacMatrix = []access{
	// The admin (system:masters) may do everything, everywhere.
	{user: admin, verb: "create", resource: "virtualmachines", namespace: teamA, want: allowed},
	{user: admin, verb: "delete", resource: "virtualmachines", namespace: teamB, want: allowed},
	{user: admin, verb: "list", resource: "virtualmachines", namespace: teamB, want: allowed},
	{user: admin, verb: "update", resource: "virtualmachines/status", namespace: teamB, want: allowed},
	{user: admin, verb: "create", resource: "virtualmachines/binding", namespace: teamA, want: allowed},
	{user: admin, verb: "create", resource: "virtualmachines/start", namespace: teamB, vm: v1alpha1.RunStrategyHalted, want: allowed},
	{user: admin, verb: "create", resource: "virtualmachines/stop", namespace: teamA, want: allowed},
	{user: admin, verb: "get", resource: "virtualmachines/console", namespace: teamB, want: authorized},
	{user: admin, verb: "create", resource: "virtualmachinesnapshots", namespace: teamB, want: allowed},
	{user: admin, verb: "update", resource: "virtualmachinesnapshots/status", namespace: teamA, want: allowed},
	{user: admin, verb: "delete", resource: "virtualmachinerestores", namespace: teamB, want: allowed},
	{user: admin, verb: "create", resource: "hypervisors", want: allowed},
	{user: admin, verb: "list", resource: "hypervisors", want: allowed},
	{user: admin, verb: "update", resource: "hypervisors", want: allowed},
	{user: admin, verb: "update", resource: "hypervisors/status", want: allowed},
	{user: admin, verb: "delete", resource: "hypervisors", want: allowed},

	// alice (edit in team-a) runs VMs there...
	{user: "alice", verb: "create", resource: "virtualmachines", namespace: teamA, want: allowed},
	{user: "alice", verb: "get", resource: "virtualmachines", namespace: teamA, want: allowed},
	{user: "alice", verb: "list", resource: "virtualmachines", namespace: teamA, want: allowed},
	{user: "alice", verb: "watch", resource: "virtualmachines", namespace: teamA, want: allowed},
	{user: "alice", verb: "update", resource: "virtualmachines", namespace: teamA, want: allowed},
	{user: "alice", verb: "patch", resource: "virtualmachines", namespace: teamA, want: allowed},
	{user: "alice", verb: "delete", resource: "virtualmachines", namespace: teamA, want: allowed},
	{user: "alice", verb: "deletecollection", resource: "virtualmachines", namespace: teamA, want: allowed},
	{user: "alice", verb: "create", resource: "virtualmachines/start", namespace: teamA, vm: v1alpha1.RunStrategyHalted, want: allowed},
	{user: "alice", verb: "create", resource: "virtualmachines/stop", namespace: teamA, vm: v1alpha1.RunStrategyAlways, want: allowed},
	{user: "alice", verb: "create", resource: "virtualmachines/start", namespace: teamA, vm: v1alpha1.RunStrategyAlways, want: conflict},
	{user: "alice", verb: "create", resource: "virtualmachines/stop", namespace: teamA, vm: v1alpha1.RunStrategyHalted, want: conflict},
	{user: "alice", verb: "create", resource: "virtualmachines/restart", namespace: teamA, want: conflict},
	{user: "alice", verb: "create", resource: "virtualmachines/pause", namespace: teamA, want: conflict},
	{user: "alice", verb: "create", resource: "virtualmachines/unpause", namespace: teamA, want: conflict},
	{user: "alice", verb: "get", resource: "virtualmachines/console", namespace: teamA, want: authorized},
	{user: "alice", verb: "create", resource: "virtualmachines/console", namespace: teamA, want: authorized},
	{user: "alice", verb: "get", resource: "virtualmachines/log", namespace: teamA, want: authorized},
	{user: "alice", verb: "create", resource: "virtualmachinesnapshots", namespace: teamA, want: allowed},
	{user: "alice", verb: "get", resource: "virtualmachinesnapshots", namespace: teamA, want: allowed},
	{user: "alice", verb: "list", resource: "virtualmachinesnapshots", namespace: teamA, want: allowed},
	{user: "alice", verb: "watch", resource: "virtualmachinesnapshots", namespace: teamA, want: allowed},
	{user: "alice", verb: "update", resource: "virtualmachinesnapshots", namespace: teamA, want: allowed},
	{user: "alice", verb: "patch", resource: "virtualmachinesnapshots", namespace: teamA, want: allowed},
	{user: "alice", verb: "delete", resource: "virtualmachinesnapshots", namespace: teamA, want: allowed},
	{user: "alice", verb: "create", resource: "virtualmachinerestores", namespace: teamA, want: allowed},
	{user: "alice", verb: "get", resource: "virtualmachinerestores", namespace: teamA, want: allowed},
	{user: "alice", verb: "list", resource: "virtualmachinerestores", namespace: teamA, want: allowed},
	{user: "alice", verb: "update", resource: "virtualmachinerestores", namespace: teamA, want: allowed},
	{user: "alice", verb: "delete", resource: "virtualmachinerestores", namespace: teamA, want: allowed},
	// ...but writes no status, binds nothing (agents and the scheduler do),
	{user: "alice", verb: "update", resource: "virtualmachines/status", namespace: teamA, want: forbidden},
	{user: "alice", verb: "patch", resource: "virtualmachines/status", namespace: teamA, want: forbidden},
	{user: "alice", verb: "create", resource: "virtualmachines/binding", namespace: teamA, want: forbidden},
	{user: "alice", verb: "update", resource: "virtualmachinesnapshots/status", namespace: teamA, want: forbidden},
	{user: "alice", verb: "update", resource: "virtualmachinerestores/status", namespace: teamA, want: forbidden},
	// touches no hypervisor,
	{user: "alice", verb: "get", resource: "hypervisors", want: forbidden},
	{user: "alice", verb: "list", resource: "hypervisors", want: forbidden},
	{user: "alice", verb: "watch", resource: "hypervisors", want: forbidden},
	{user: "alice", verb: "create", resource: "hypervisors", want: forbidden},
	{user: "alice", verb: "update", resource: "hypervisors", want: forbidden},
	{user: "alice", verb: "delete", resource: "hypervisors", want: forbidden},
	{user: "alice", verb: "update", resource: "hypervisors/status", want: forbidden},
	// and can do nothing in team-b.
	{user: "alice", verb: "get", resource: "virtualmachines", namespace: teamB, want: forbidden},
	{user: "alice", verb: "list", resource: "virtualmachines", namespace: teamB, want: forbidden},
	{user: "alice", verb: "watch", resource: "virtualmachines", namespace: teamB, want: forbidden},
	{user: "alice", verb: "create", resource: "virtualmachines", namespace: teamB, want: forbidden},
	{user: "alice", verb: "update", resource: "virtualmachines", namespace: teamB, want: forbidden},
	{user: "alice", verb: "delete", resource: "virtualmachines", namespace: teamB, want: forbidden},
	{user: "alice", verb: "create", resource: "virtualmachines/start", namespace: teamB, vm: v1alpha1.RunStrategyHalted, want: forbidden},
	{user: "alice", verb: "create", resource: "virtualmachines/stop", namespace: teamB, want: forbidden},
	{user: "alice", verb: "get", resource: "virtualmachines/console", namespace: teamB, want: forbidden},
	{user: "alice", verb: "get", resource: "virtualmachines/log", namespace: teamB, want: forbidden},
	{user: "alice", verb: "list", resource: "virtualmachinesnapshots", namespace: teamB, want: forbidden},
	{user: "alice", verb: "create", resource: "virtualmachinesnapshots", namespace: teamB, want: forbidden},
	{user: "alice", verb: "create", resource: "virtualmachinerestores", namespace: teamB, want: forbidden},

	// bob (view in team-b) reads there...
	{user: "bob", verb: "get", resource: "virtualmachines", namespace: teamB, want: allowed},
	{user: "bob", verb: "list", resource: "virtualmachines", namespace: teamB, want: allowed},
	{user: "bob", verb: "watch", resource: "virtualmachines", namespace: teamB, want: allowed},
	{user: "bob", verb: "get", resource: "virtualmachinesnapshots", namespace: teamB, want: allowed},
	{user: "bob", verb: "list", resource: "virtualmachinesnapshots", namespace: teamB, want: allowed},
	{user: "bob", verb: "watch", resource: "virtualmachinesnapshots", namespace: teamB, want: allowed},
	{user: "bob", verb: "get", resource: "virtualmachinerestores", namespace: teamB, want: allowed},
	{user: "bob", verb: "list", resource: "virtualmachinerestores", namespace: teamB, want: allowed},
	// The console log is readable, as pods/log is with view.
	{user: "bob", verb: "get", resource: "virtualmachines/log", namespace: teamB, want: authorized},
	// ...and nothing more: no writes, no actions, no console,
	{user: "bob", verb: "create", resource: "virtualmachines", namespace: teamB, want: forbidden},
	{user: "bob", verb: "update", resource: "virtualmachines", namespace: teamB, want: forbidden},
	{user: "bob", verb: "patch", resource: "virtualmachines", namespace: teamB, want: forbidden},
	{user: "bob", verb: "delete", resource: "virtualmachines", namespace: teamB, want: forbidden},
	{user: "bob", verb: "deletecollection", resource: "virtualmachines", namespace: teamB, want: forbidden},
	{user: "bob", verb: "create", resource: "virtualmachines/start", namespace: teamB, vm: v1alpha1.RunStrategyHalted, want: forbidden},
	{user: "bob", verb: "create", resource: "virtualmachines/stop", namespace: teamB, want: forbidden},
	{user: "bob", verb: "create", resource: "virtualmachines/restart", namespace: teamB, want: forbidden},
	{user: "bob", verb: "create", resource: "virtualmachines/pause", namespace: teamB, want: forbidden},
	{user: "bob", verb: "create", resource: "virtualmachines/unpause", namespace: teamB, want: forbidden},
	{user: "bob", verb: "get", resource: "virtualmachines/console", namespace: teamB, want: forbidden},
	{user: "bob", verb: "create", resource: "virtualmachines/console", namespace: teamB, want: forbidden},
	{user: "bob", verb: "update", resource: "virtualmachines/status", namespace: teamB, want: forbidden},
	{user: "bob", verb: "create", resource: "virtualmachines/binding", namespace: teamB, want: forbidden},
	{user: "bob", verb: "create", resource: "virtualmachinesnapshots", namespace: teamB, want: forbidden},
	{user: "bob", verb: "delete", resource: "virtualmachinesnapshots", namespace: teamB, want: forbidden},
	{user: "bob", verb: "create", resource: "virtualmachinerestores", namespace: teamB, want: forbidden},
	{user: "bob", verb: "list", resource: "hypervisors", want: forbidden},
	// nothing at all in team-a.
	{user: "bob", verb: "get", resource: "virtualmachines", namespace: teamA, want: forbidden},
	{user: "bob", verb: "list", resource: "virtualmachines", namespace: teamA, want: forbidden},
	{user: "bob", verb: "watch", resource: "virtualmachines", namespace: teamA, want: forbidden},
	{user: "bob", verb: "create", resource: "virtualmachines", namespace: teamA, want: forbidden},
	{user: "bob", verb: "delete", resource: "virtualmachines", namespace: teamA, want: forbidden},
	{user: "bob", verb: "create", resource: "virtualmachines/start", namespace: teamA, vm: v1alpha1.RunStrategyHalted, want: forbidden},
	{user: "bob", verb: "get", resource: "virtualmachines/console", namespace: teamA, want: forbidden},
	{user: "bob", verb: "get", resource: "virtualmachines/log", namespace: teamA, want: forbidden},
	{user: "bob", verb: "list", resource: "virtualmachinesnapshots", namespace: teamA, want: forbidden},
	{user: "bob", verb: "get", resource: "virtualmachinerestores", namespace: teamA, want: forbidden},
}

// TestRBACMatrix sends every request of rbacMatrix for real, through
// kube-apiserver (which authorizes it with RBAC, then proxies it) to the
// vessel-apiserver (which authorizes it again by SubjectAccessReview), and
// checks both directions: what must work works, what must not is 403.
func TestRBACMatrix(t *testing.T) {
	c := controlPlane(t)
	m := &matrix{
		t:       t,
		run:     uniqueName("rbac"),
		clients: map[string]*versioned.Clientset{},
	}
	for _, user := range []string{admin, "alice", "bob"} {
		m.clients[user] = vesselClient(t, c, user)
	}
	t.Cleanup(m.cleanup)

	for _, a := range rbacMatrix {
		name := fmt.Sprintf("%s %s %s", a.user, a.verb, a.resource)
		if a.namespace != "" {
			name += " in " + a.namespace
		}
		if a.vm != "" {
			name += " of a " + string(a.vm) + " VM"
		}
		t.Run(name, func(t *testing.T) {
			row := *m // the admin's fixtures fail this subtest, not the matrix
			row.t = t
			err := row.do(t.Context(), a)
			code := statusCode(err)
			switch a.want {
			case allowed:
				if err != nil {
					t.Errorf("want it allowed, got %d: %v", code, err)
				}
			case conflict:
				if code != 409 {
					t.Errorf("want 409 Conflict (authorized, but not now), got %d: %v", code, err)
				}
			case forbidden:
				// The denial names the user: the request was
				// authenticated as who sent it.
				if code != 403 || !strings.Contains(err.Error(), fmt.Sprintf("User %q", userName(a.user))) {
					t.Errorf("want 403 Forbidden for %s, got %d: %v", userName(a.user), code, err)
				}
			case authorized:
				if code == 0 || code == 401 || code == 403 {
					t.Errorf("want an answer past authorization, got %d: %v", code, err)
				} else {
					t.Logf("answered %d: %v", code, err)
				}
			}
		})
	}
}

// userName is the name kube-apiserver knows a kubeconfig's user by.
func userName(kubeconfig string) string {
	if kubeconfig == admin {
		return "kubernetes-admin"
	}
	return kubeconfig
}

// runLabel marks every object TestRBACMatrix makes, for cleanup.
const runLabel = "e2e.vessel.dev/run"

type matrix struct {
	t       *testing.T
	run     string
	clients map[string]*versioned.Clientset
}

func (m *matrix) admin() *versioned.Clientset { return m.clients[admin] }

func (m *matrix) meta(prefix, namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: uniqueName(prefix), Namespace: namespace, Labels: map[string]string{runLabel: m.run}}
}

// The admin makes the objects requests act on.

func (m *matrix) newVM(namespace string, strategy v1alpha1.RunStrategy) *v1alpha1.VirtualMachine {
	if strategy == "" {
		strategy = v1alpha1.RunStrategyAlways
	}
	vm := newVM(namespace, "", strategy)
	vm.ObjectMeta = m.meta("vm", namespace)
	return vm
}

func (m *matrix) vm(namespace string, strategy v1alpha1.RunStrategy) string {
	m.t.Helper()
	vm, err := m.admin().VesselV1alpha1().VirtualMachines(namespace).Create(m.t.Context(), m.newVM(namespace, strategy), metav1.CreateOptions{})
	if err != nil {
		m.t.Fatalf("admin creates a VM: %v", err)
	}
	return vm.Name
}

func (m *matrix) newSnapshot(namespace string) *v1alpha1.VirtualMachineSnapshot {
	return &v1alpha1.VirtualMachineSnapshot{
		ObjectMeta: m.meta("snap", namespace),
		Spec:       v1alpha1.VirtualMachineSnapshotSpec{VirtualMachineName: m.vm(namespace, v1alpha1.RunStrategyHalted)},
	}
}

func (m *matrix) snapshot(namespace string) string {
	m.t.Helper()
	s, err := m.admin().VesselV1alpha1().VirtualMachineSnapshots(namespace).Create(m.t.Context(), m.newSnapshot(namespace), metav1.CreateOptions{})
	if err != nil {
		m.t.Fatalf("admin creates a snapshot: %v", err)
	}
	return s.Name
}

// newRestore names a VM and a snapshot of it that is ready to use, as a
// restore must; with no agent here, the admin reports the snapshot taken.
func (m *matrix) newRestore(namespace string) *v1alpha1.VirtualMachineRestore {
	m.t.Helper()
	snapshots := m.admin().VesselV1alpha1().VirtualMachineSnapshots(namespace)
	snap, err := snapshots.Create(m.t.Context(), m.newSnapshot(namespace), metav1.CreateOptions{})
	if err != nil {
		m.t.Fatalf("admin creates a snapshot: %v", err)
	}
	vm, err := m.admin().VesselV1alpha1().VirtualMachines(namespace).Get(m.t.Context(), snap.Spec.VirtualMachineName, metav1.GetOptions{})
	if err != nil {
		m.t.Fatal(err)
	}
	markSnapshotReady(snap, vm)
	if _, err := snapshots.UpdateStatus(m.t.Context(), snap, metav1.UpdateOptions{}); err != nil {
		m.t.Fatalf("admin reports the snapshot ready: %v", err)
	}
	return &v1alpha1.VirtualMachineRestore{
		ObjectMeta: m.meta("restore", namespace),
		Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: vm.Name, SnapshotName: snap.Name},
	}
}

// markSnapshotReady sets the status an agent writes once it took s of vm.
func markSnapshotReady(s *v1alpha1.VirtualMachineSnapshot, vm *v1alpha1.VirtualMachine) {
	now := metav1.Now()
	s.Status.Phase = v1alpha1.SnapshotSucceeded
	s.Status.ReadyToUse = true
	s.Status.CreationTime = &now
	s.Status.VirtualMachineUID = string(vm.UID)
}

func (m *matrix) restore(namespace string) string {
	m.t.Helper()
	r, err := m.admin().VesselV1alpha1().VirtualMachineRestores(namespace).Create(m.t.Context(), m.newRestore(namespace), metav1.CreateOptions{})
	if err != nil {
		m.t.Fatalf("admin creates a restore: %v", err)
	}
	return r.Name
}

func (m *matrix) newHypervisor() *v1alpha1.Hypervisor {
	return &v1alpha1.Hypervisor{ObjectMeta: m.meta("hv", "")}
}

func (m *matrix) hypervisor() string {
	m.t.Helper()
	hv, err := m.admin().VesselV1alpha1().Hypervisors().Create(m.t.Context(), m.newHypervisor(), metav1.CreateOptions{})
	if err != nil {
		m.t.Fatalf("admin creates a hypervisor: %v", err)
	}
	return hv.Name
}

// do sends a's request as a's user.
func (m *matrix) do(ctx context.Context, a access) error {
	v := m.clients[a.user].VesselV1alpha1()
	adm := m.admin().VesselV1alpha1()
	ns := a.namespace
	create := metav1.CreateOptions{}
	update := metav1.UpdateOptions{}
	switch a.resource {
	case "virtualmachines":
		return crud(ctx, a.verb, v.VirtualMachines(ns), adm.VirtualMachines(ns),
			func() *v1alpha1.VirtualMachine { return m.newVM(ns, a.vm) },
			func() string { return m.vm(ns, a.vm) })
	case "virtualmachinesnapshots":
		return crud(ctx, a.verb, v.VirtualMachineSnapshots(ns), adm.VirtualMachineSnapshots(ns),
			func() *v1alpha1.VirtualMachineSnapshot { return m.newSnapshot(ns) },
			func() string { return m.snapshot(ns) })
	case "virtualmachinerestores":
		return crud(ctx, a.verb, v.VirtualMachineRestores(ns), adm.VirtualMachineRestores(ns),
			func() *v1alpha1.VirtualMachineRestore { return m.newRestore(ns) },
			func() string { return m.restore(ns) })
	case "hypervisors":
		return crud(ctx, a.verb, v.Hypervisors(), adm.Hypervisors(), m.newHypervisor, m.hypervisor)

	case "virtualmachines/status":
		name := m.vm(ns, a.vm)
		if a.verb == "patch" {
			_, err := v.VirtualMachines(ns).Patch(ctx, name, types.MergePatchType, []byte(`{"status":{"phase":"Running"}}`), metav1.PatchOptions{}, "status")
			return err
		}
		return updateAsAdminRead(ctx, adm.VirtualMachines(ns).Get, name, func(vm *v1alpha1.VirtualMachine) error {
			vm.Status.ConsoleLogBytes = 1
			_, err := v.VirtualMachines(ns).UpdateStatus(ctx, vm, update)
			return err
		})
	case "virtualmachinesnapshots/status":
		return updateAsAdminRead(ctx, adm.VirtualMachineSnapshots(ns).Get, m.snapshot(ns), func(s *v1alpha1.VirtualMachineSnapshot) error {
			s.Status.Phase = v1alpha1.SnapshotInProgress
			_, err := v.VirtualMachineSnapshots(ns).UpdateStatus(ctx, s, update)
			return err
		})
	case "virtualmachinerestores/status":
		return updateAsAdminRead(ctx, adm.VirtualMachineRestores(ns).Get, m.restore(ns), func(r *v1alpha1.VirtualMachineRestore) error {
			r.Status.Phase = v1alpha1.SnapshotInProgress
			_, err := v.VirtualMachineRestores(ns).UpdateStatus(ctx, r, update)
			return err
		})
	case "hypervisors/status":
		return updateAsAdminRead(ctx, adm.Hypervisors().Get, m.hypervisor(), func(hv *v1alpha1.Hypervisor) error {
			hv.Status.AgentVersion = "e2e"
			_, err := v.Hypervisors().UpdateStatus(ctx, hv, update)
			return err
		})

	case "virtualmachines/binding":
		// A dry run: authorization and the whole write path, without a
		// VM bound to a hypervisor that does not exist.
		name := m.vm(ns, a.vm)
		binding := &v1alpha1.VirtualMachineBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Target: "nowhere"}
		_, err := v.VirtualMachines(ns).Bind(ctx, name, binding, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	case "virtualmachines/start", "virtualmachines/stop", "virtualmachines/restart", "virtualmachines/pause", "virtualmachines/unpause":
		vms := v.VirtualMachines(ns)
		action := map[string]func(context.Context, string, *v1alpha1.VirtualMachineActionOptions, metav1.CreateOptions) (*v1alpha1.VirtualMachine, error){
			"start": vms.Start, "stop": vms.Stop, "restart": vms.Restart, "pause": vms.Pause, "unpause": vms.Unpause,
		}[strings.TrimPrefix(a.resource, "virtualmachines/")]
		_, err := action(ctx, m.vm(ns, a.vm), &v1alpha1.VirtualMachineActionOptions{}, create)
		return err
	case "virtualmachines/console", "virtualmachines/log":
		// Raw requests: these are streams, not objects.
		req := v.RESTClient().Get()
		if a.verb == "create" {
			req = v.RESTClient().Post()
		}
		sub := strings.TrimPrefix(a.resource, "virtualmachines/")
		return req.Namespace(ns).Resource("virtualmachines").Name(m.vm(ns, a.vm)).SubResource(sub).Do(ctx).Error()
	}
	return fmt.Errorf("the matrix has no request for %s %s", a.verb, a.resource)
}

// typed is what the generated clients of every vessel.dev kind offer.
type typed[T any, L any] interface {
	Create(context.Context, T, metav1.CreateOptions) (T, error)
	Update(context.Context, T, metav1.UpdateOptions) (T, error)
	Delete(context.Context, string, metav1.DeleteOptions) error
	DeleteCollection(context.Context, metav1.DeleteOptions, metav1.ListOptions) error
	Get(context.Context, string, metav1.GetOptions) (T, error)
	List(context.Context, metav1.ListOptions) (L, error)
	Watch(context.Context, metav1.ListOptions) (watch.Interface, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

// crud sends one request of the main resource: as the user through user,
// on a new object (create) or one the admin made for it (existing).
func crud[T metav1.Object, L any](ctx context.Context, verb string, user, admin typed[T, L], newObject func() T, existing func() string) error {
	switch verb {
	case "get":
		_, err := user.Get(ctx, existing(), metav1.GetOptions{})
		return err
	case "list":
		_, err := user.List(ctx, metav1.ListOptions{})
		return err
	case "watch":
		w, err := user.Watch(ctx, metav1.ListOptions{})
		if err == nil {
			w.Stop()
		}
		return err
	case "create":
		_, err := user.Create(ctx, newObject(), metav1.CreateOptions{})
		return err
	case "update":
		return updateAsAdminRead(ctx, admin.Get, existing(), func(obj T) error {
			labels := obj.GetLabels()
			if labels == nil {
				labels = map[string]string{}
			}
			labels["touched"] = "true"
			obj.SetLabels(labels)
			_, err := user.Update(ctx, obj, metav1.UpdateOptions{})
			return err
		})
	case "patch":
		_, err := user.Patch(ctx, existing(), types.MergePatchType, []byte(`{"metadata":{"labels":{"touched":"true"}}}`), metav1.PatchOptions{})
		return err
	case "delete":
		return user.Delete(ctx, existing(), metav1.DeleteOptions{})
	case "deletecollection":
		// Only the one object made for it: the namespace is shared.
		return user.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{FieldSelector: "metadata.name=" + existing()})
	}
	return fmt.Errorf("the matrix has no request for verb %s", verb)
}

// updateAsAdminRead reads an object as the admin (the user may not be
// allowed to) and lets write send it back changed, again after a write
// conflict: the scheduler writes VM status concurrently.
func updateAsAdminRead[T any](ctx context.Context, get func(context.Context, string, metav1.GetOptions) (T, error), name string, write func(T) error) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		return write(obj)
	})
}

// cleanup deletes what the matrix made in the shared tenant namespaces
// (snapshots go with their VMs, by owner reference).
func (m *matrix) cleanup() {
	ctx := context.Background()
	v := m.admin().VesselV1alpha1()
	opts := metav1.ListOptions{LabelSelector: runLabel + "=" + m.run}
	for _, ns := range []string{teamA, teamB} {
		for what, deleteAll := range map[string]func(context.Context, metav1.DeleteOptions, metav1.ListOptions) error{
			"VMs":       v.VirtualMachines(ns).DeleteCollection,
			"snapshots": v.VirtualMachineSnapshots(ns).DeleteCollection,
			"restores":  v.VirtualMachineRestores(ns).DeleteCollection,
		} {
			if err := deleteAll(ctx, metav1.DeleteOptions{}, opts); err != nil {
				m.t.Errorf("clean up %s in %s: %v", what, ns, err)
			}
		}
	}
	if err := v.Hypervisors().DeleteCollection(ctx, metav1.DeleteOptions{}, opts); err != nil {
		m.t.Errorf("clean up hypervisors: %v", err)
	}
}
