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
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher"
)

// access is one request of the matrix: user does verb on resource (with
// its subresource) in namespace ("" for cluster-scoped), and must be
// answered with code. Every request that needs an object gets a fresh one,
// made by the admin, so that rows do not depend on each other. vm is the
// run strategy of that VM, for the power actions whose sense depends on it.
type access struct {
	user      string
	verb      string
	resource  string
	namespace string
	vm        v1alpha1.RunStrategy
	// code is the HTTP status of the answer: 200 or 201 when the request
	// succeeds, 403 when RBAC denies it, 409 when it is authorized but
	// makes no sense for the VM (with no agent here, every VM is Pending
	// and runs nowhere).
	code int
	// says is what the message of a 409 must contain: why the
	// vessel-apiserver refused, which only it can tell, so the request
	// got past authorization. A 403's message is checked for the user and
	// the request RBAC denied, unless says is set: then the
	// vessel-apiserver refused what RBAC allowed, and says why.
	says string
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
	{user: admin, verb: "create", resource: "virtualmachines", namespace: teamA, code: 201},
	{user: admin, verb: "delete", resource: "virtualmachines", namespace: teamB, code: 200},
	{user: admin, verb: "list", resource: "virtualmachines", namespace: teamB, code: 200},
	{user: admin, verb: "update", resource: "virtualmachines/status", namespace: teamB, code: 200},
	{user: admin, verb: "create", resource: "virtualmachines/binding", namespace: teamA, code: 201},
	{user: admin, verb: "create", resource: "virtualmachines/start", namespace: teamB, vm: v1alpha1.RunStrategyHalted, code: 201},
	{user: admin, verb: "create", resource: "virtualmachines/stop", namespace: teamA, code: 201},
	{user: admin, verb: "get", resource: "virtualmachines/console", namespace: teamB, code: 409, says: "is not running (phase Pending)"},
	// User data is for the VM's agent alone, even with RBAC allowing all.
	{user: admin, verb: "get", resource: "virtualmachines/userdata", namespace: teamA, code: 403, says: "only the node agent of the VM's hypervisor may read its user data, and kubernetes-admin is no node agent"},
	{user: admin, verb: "create", resource: "virtualmachinesnapshots", namespace: teamB, code: 201},
	{user: admin, verb: "update", resource: "virtualmachinesnapshots/status", namespace: teamA, code: 200},
	{user: admin, verb: "delete", resource: "virtualmachinerestores", namespace: teamB, code: 200},
	{user: admin, verb: "create", resource: "hypervisors", code: 201},
	{user: admin, verb: "list", resource: "hypervisors", code: 200},
	{user: admin, verb: "update", resource: "hypervisors", code: 200},
	{user: admin, verb: "update", resource: "hypervisors/status", code: 200},
	{user: admin, verb: "delete", resource: "hypervisors", code: 200},

	// alice (edit in team-a) runs VMs there...
	{user: "alice", verb: "create", resource: "virtualmachines", namespace: teamA, code: 201},
	{user: "alice", verb: "get", resource: "virtualmachines", namespace: teamA, code: 200},
	{user: "alice", verb: "list", resource: "virtualmachines", namespace: teamA, code: 200},
	{user: "alice", verb: "watch", resource: "virtualmachines", namespace: teamA, code: 200},
	{user: "alice", verb: "update", resource: "virtualmachines", namespace: teamA, code: 200},
	{user: "alice", verb: "patch", resource: "virtualmachines", namespace: teamA, code: 200},
	{user: "alice", verb: "delete", resource: "virtualmachines", namespace: teamA, code: 200},
	{user: "alice", verb: "deletecollection", resource: "virtualmachines", namespace: teamA, code: 200},
	{user: "alice", verb: "create", resource: "virtualmachines/start", namespace: teamA, vm: v1alpha1.RunStrategyHalted, code: 201},
	{user: "alice", verb: "create", resource: "virtualmachines/stop", namespace: teamA, vm: v1alpha1.RunStrategyAlways, code: 201},
	{user: "alice", verb: "create", resource: "virtualmachines/start", namespace: teamA, vm: v1alpha1.RunStrategyAlways, code: 409, says: "VM has runStrategy Always: it already runs whenever it can"},
	{user: "alice", verb: "create", resource: "virtualmachines/stop", namespace: teamA, vm: v1alpha1.RunStrategyHalted, code: 409, says: "VM is already stopped (runStrategy Halted)"},
	{user: "alice", verb: "create", resource: "virtualmachines/restart", namespace: teamA, code: 409, says: "VM is not running (phase Pending): start it instead"},
	{user: "alice", verb: "create", resource: "virtualmachines/pause", namespace: teamA, code: 409, says: "VM is not running (phase Pending): only a running VM can be paused"},
	{user: "alice", verb: "create", resource: "virtualmachines/unpause", namespace: teamA, code: 409, says: "VM is not paused"},
	{user: "alice", verb: "get", resource: "virtualmachines/console", namespace: teamA, code: 409, says: "is not running (phase Pending)"},
	{user: "alice", verb: "create", resource: "virtualmachines/console", namespace: teamA, code: 409, says: "is not running (phase Pending)"},
	{user: "alice", verb: "create", resource: "virtualmachines/portforward", namespace: teamA, code: 409, says: "is not running (phase Pending)"},
	{user: "alice", verb: "get", resource: "virtualmachines/portforward", namespace: teamA, code: 409, says: "is not running (phase Pending)"},
	{user: "alice", verb: "get", resource: "virtualmachines/log", namespace: teamA, code: 409, says: "is not scheduled to a hypervisor yet (phase Pending)"},
	// She may not read user data back through the API: only the agent may.
	{user: "alice", verb: "get", resource: "virtualmachines/userdata", namespace: teamA, code: 403},
	{user: "alice", verb: "create", resource: "virtualmachinesnapshots", namespace: teamA, code: 201},
	{user: "alice", verb: "get", resource: "virtualmachinesnapshots", namespace: teamA, code: 200},
	{user: "alice", verb: "list", resource: "virtualmachinesnapshots", namespace: teamA, code: 200},
	{user: "alice", verb: "watch", resource: "virtualmachinesnapshots", namespace: teamA, code: 200},
	{user: "alice", verb: "update", resource: "virtualmachinesnapshots", namespace: teamA, code: 200},
	{user: "alice", verb: "patch", resource: "virtualmachinesnapshots", namespace: teamA, code: 200},
	{user: "alice", verb: "delete", resource: "virtualmachinesnapshots", namespace: teamA, code: 200},
	{user: "alice", verb: "create", resource: "virtualmachinerestores", namespace: teamA, code: 201},
	{user: "alice", verb: "get", resource: "virtualmachinerestores", namespace: teamA, code: 200},
	{user: "alice", verb: "list", resource: "virtualmachinerestores", namespace: teamA, code: 200},
	{user: "alice", verb: "update", resource: "virtualmachinerestores", namespace: teamA, code: 200},
	{user: "alice", verb: "delete", resource: "virtualmachinerestores", namespace: teamA, code: 200},
	// ...but writes no status, binds nothing (agents and the scheduler do),
	{user: "alice", verb: "update", resource: "virtualmachines/status", namespace: teamA, code: 403},
	{user: "alice", verb: "patch", resource: "virtualmachines/status", namespace: teamA, code: 403},
	{user: "alice", verb: "create", resource: "virtualmachines/binding", namespace: teamA, code: 403},
	{user: "alice", verb: "update", resource: "virtualmachinesnapshots/status", namespace: teamA, code: 403},
	{user: "alice", verb: "update", resource: "virtualmachinerestores/status", namespace: teamA, code: 403},
	// touches no hypervisor,
	{user: "alice", verb: "get", resource: "hypervisors", code: 403},
	{user: "alice", verb: "list", resource: "hypervisors", code: 403},
	{user: "alice", verb: "watch", resource: "hypervisors", code: 403},
	{user: "alice", verb: "create", resource: "hypervisors", code: 403},
	{user: "alice", verb: "update", resource: "hypervisors", code: 403},
	{user: "alice", verb: "delete", resource: "hypervisors", code: 403},
	{user: "alice", verb: "update", resource: "hypervisors/status", code: 403},
	// and can do nothing in team-b.
	{user: "alice", verb: "get", resource: "virtualmachines", namespace: teamB, code: 403},
	{user: "alice", verb: "list", resource: "virtualmachines", namespace: teamB, code: 403},
	{user: "alice", verb: "watch", resource: "virtualmachines", namespace: teamB, code: 403},
	{user: "alice", verb: "create", resource: "virtualmachines", namespace: teamB, code: 403},
	{user: "alice", verb: "update", resource: "virtualmachines", namespace: teamB, code: 403},
	{user: "alice", verb: "delete", resource: "virtualmachines", namespace: teamB, code: 403},
	{user: "alice", verb: "create", resource: "virtualmachines/start", namespace: teamB, vm: v1alpha1.RunStrategyHalted, code: 403},
	{user: "alice", verb: "create", resource: "virtualmachines/stop", namespace: teamB, code: 403},
	{user: "alice", verb: "get", resource: "virtualmachines/console", namespace: teamB, code: 403},
	{user: "alice", verb: "get", resource: "virtualmachines/log", namespace: teamB, code: 403},
	{user: "alice", verb: "list", resource: "virtualmachinesnapshots", namespace: teamB, code: 403},
	{user: "alice", verb: "create", resource: "virtualmachinesnapshots", namespace: teamB, code: 403},
	{user: "alice", verb: "create", resource: "virtualmachinerestores", namespace: teamB, code: 403},

	// bob (view in team-b) reads there...
	{user: "bob", verb: "get", resource: "virtualmachines", namespace: teamB, code: 200},
	{user: "bob", verb: "list", resource: "virtualmachines", namespace: teamB, code: 200},
	{user: "bob", verb: "watch", resource: "virtualmachines", namespace: teamB, code: 200},
	{user: "bob", verb: "get", resource: "virtualmachinesnapshots", namespace: teamB, code: 200},
	{user: "bob", verb: "list", resource: "virtualmachinesnapshots", namespace: teamB, code: 200},
	{user: "bob", verb: "watch", resource: "virtualmachinesnapshots", namespace: teamB, code: 200},
	{user: "bob", verb: "get", resource: "virtualmachinerestores", namespace: teamB, code: 200},
	{user: "bob", verb: "list", resource: "virtualmachinerestores", namespace: teamB, code: 200},
	// The console log is readable, as pods/log is with view.
	{user: "bob", verb: "get", resource: "virtualmachines/log", namespace: teamB, code: 409, says: "is not scheduled to a hypervisor yet (phase Pending)"},
	// ...and nothing more: no writes, no actions, no console,
	{user: "bob", verb: "create", resource: "virtualmachines", namespace: teamB, code: 403},
	{user: "bob", verb: "update", resource: "virtualmachines", namespace: teamB, code: 403},
	{user: "bob", verb: "patch", resource: "virtualmachines", namespace: teamB, code: 403},
	{user: "bob", verb: "delete", resource: "virtualmachines", namespace: teamB, code: 403},
	{user: "bob", verb: "deletecollection", resource: "virtualmachines", namespace: teamB, code: 403},
	{user: "bob", verb: "create", resource: "virtualmachines/start", namespace: teamB, vm: v1alpha1.RunStrategyHalted, code: 403},
	{user: "bob", verb: "create", resource: "virtualmachines/stop", namespace: teamB, code: 403},
	{user: "bob", verb: "create", resource: "virtualmachines/restart", namespace: teamB, code: 403},
	{user: "bob", verb: "create", resource: "virtualmachines/pause", namespace: teamB, code: 403},
	{user: "bob", verb: "create", resource: "virtualmachines/unpause", namespace: teamB, code: 403},
	{user: "bob", verb: "get", resource: "virtualmachines/console", namespace: teamB, code: 403},
	{user: "bob", verb: "create", resource: "virtualmachines/console", namespace: teamB, code: 403},
	{user: "bob", verb: "create", resource: "virtualmachines/portforward", namespace: teamB, code: 403},
	{user: "bob", verb: "get", resource: "virtualmachines/portforward", namespace: teamB, code: 403},
	{user: "bob", verb: "get", resource: "virtualmachines/userdata", namespace: teamB, code: 403},
	{user: "bob", verb: "update", resource: "virtualmachines/status", namespace: teamB, code: 403},
	{user: "bob", verb: "create", resource: "virtualmachines/binding", namespace: teamB, code: 403},
	{user: "bob", verb: "create", resource: "virtualmachinesnapshots", namespace: teamB, code: 403},
	{user: "bob", verb: "delete", resource: "virtualmachinesnapshots", namespace: teamB, code: 403},
	{user: "bob", verb: "create", resource: "virtualmachinerestores", namespace: teamB, code: 403},
	{user: "bob", verb: "list", resource: "hypervisors", code: 403},
	// nothing at all in team-a.
	{user: "bob", verb: "get", resource: "virtualmachines", namespace: teamA, code: 403},
	{user: "bob", verb: "list", resource: "virtualmachines", namespace: teamA, code: 403},
	{user: "bob", verb: "watch", resource: "virtualmachines", namespace: teamA, code: 403},
	{user: "bob", verb: "create", resource: "virtualmachines", namespace: teamA, code: 403},
	{user: "bob", verb: "delete", resource: "virtualmachines", namespace: teamA, code: 403},
	{user: "bob", verb: "create", resource: "virtualmachines/start", namespace: teamA, vm: v1alpha1.RunStrategyHalted, code: 403},
	{user: "bob", verb: "get", resource: "virtualmachines/console", namespace: teamA, code: 403},
	{user: "bob", verb: "get", resource: "virtualmachines/log", namespace: teamA, code: 403},
	{user: "bob", verb: "list", resource: "virtualmachinesnapshots", namespace: teamA, code: 403},
	{user: "bob", verb: "get", resource: "virtualmachinerestores", namespace: teamA, code: 403},
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
		answers: map[string]*lastAnswer{},
	}
	for _, user := range []string{admin, "alice", "bob"} {
		cfg := restConfig(t, c, user)
		answer := &lastAnswer{}
		cfg.Wrap(answer.wrap)
		client, err := versioned.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.clients[user], m.answers[user] = client, answer
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
			// The row's request is the last its user's client sent
			// (the admin makes fixtures before it).
			code := m.answers[a.user].status()
			if code != a.code {
				t.Fatalf("answered %d, want %d: %v", code, a.code, err)
			}
			switch {
			case code < 300:
				if err != nil {
					t.Errorf("answered %d, yet the client failed: %v", code, err)
				}
			case code == http.StatusForbidden && a.says != "":
				if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), a.says) {
					t.Errorf("want a Forbidden saying %q, got: %v", a.says, err)
				}
			case code == http.StatusForbidden:
				// The denial names the user, who was authenticated as
				// who sent the request, and exactly what was denied.
				if want := forbiddenMessage(a); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
					t.Errorf("want a Forbidden saying %q, got: %v", want, err)
				}
			case code == http.StatusConflict:
				if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), a.says) {
					t.Errorf("want a Conflict saying %q, got: %v", a.says, err)
				}
			default:
				t.Errorf("the matrix has no check for a %d: %v", code, err)
			}
		})
	}
}

// forbiddenMessage is what the authorizer's 403 says about a's request (as
// k8s.io/apiserver's responsewriters.Forbidden words it).
func forbiddenMessage(a access) string {
	msg := fmt.Sprintf("User %q cannot %s resource %q in API group %q", userName(a.user), a.verb, a.resource, v1alpha1.SchemeGroupVersion.Group)
	if a.namespace == "" {
		return msg + " at the cluster scope"
	}
	return msg + fmt.Sprintf(" in the namespace %q", a.namespace)
}

// lastAnswer records the HTTP status of the last response a client got:
// on success client-go returns no status, and 200 and 201 are both
// success.
type lastAnswer struct{ code atomic.Int32 }

func (l *lastAnswer) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			l.code.Store(0)
		} else {
			l.code.Store(int32(resp.StatusCode))
		}
		return resp, err
	})
}

// status is the last HTTP status, 0 when no answer came back.
func (l *lastAnswer) status() int { return int(l.code.Load()) }

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

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
	// answers holds the HTTP status each user's client got last.
	answers map[string]*lastAnswer
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
	case "virtualmachines/console", "virtualmachines/log", "virtualmachines/userdata", "virtualmachines/portforward":
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
