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
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
)

// tenants: alice may edit in namespace A and bob may view it; bob may
// edit in namespace B.
const tenants = `apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: Namespace
metadata: {name: %[2]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-edit, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-view, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-edit, namespace: %[2]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
`

// Tenants with edit may migrate their own VMs, not another namespace's;
// view may not migrate; cordoning is for cluster operators.
func TestMigrationRBAC(t *testing.T) {
	e := env(t)
	a, b := "migration-rbac-a", "migration-rbac-b"
	manifest := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(manifest, []byte(fmt.Sprintf(tenants, a, b)), 0o600); err != nil {
		t.Fatal(err)
	}
	e.MustKubectl(t, "admin", "apply", "-f", manifest)
	vm := framework.GuestVM(b, "bobs")
	vm.Spec.RunStrategy = v1alpha1.RunStrategyHalted
	if _, err := e.Admin.VesselV1alpha1().VirtualMachines(b).Create(context.Background(), vm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, ns, vm, want string
	}{
		// Allowed through RBAC: refused for the VM's state, not for who asks.
		{"bob", b, "bobs", "virtualmachinemigration.vessel.dev/"},
		{"alice", b, "bobs", "forbidden"},
		{"bob", a, "bobs", "forbidden"},
		{"alice", a, "none", "no such VirtualMachine"},
	} {
		out, _ := e.Kubectl(t, tc.user, "vm", "migrate", tc.vm, "-n", tc.ns)
		if !strings.Contains(out, tc.want) {
			t.Errorf("%s: kubectl vm migrate %s -n %s:\n%s\nwant %q", tc.user, tc.vm, tc.ns, out, tc.want)
		}
	}
	for _, user := range []string{"alice", "bob"} {
		out, err := e.Kubectl(t, user, "vm", "drain", e.Hypervisors[0].Name)
		if err == nil || !strings.Contains(out, "forbidden") {
			t.Errorf("%s could drain a hypervisor:\n%s", user, out)
		}
	}
}
