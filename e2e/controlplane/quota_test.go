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
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/launcher"
)

// tenantNamespace is a namespace of the test's own where alice has the
// built-in edit role, as in team-a: a quota there bounds nobody else.
func tenantNamespace(t *testing.T) string {
	t.Helper()
	c := controlPlane(t)
	ns := newNamespace(t, c)
	admin := kubeClient(t, c, launcher.AdminKubeconfig)
	_, err := admin.RbacV1().RoleBindings(ns).Create(t.Context(), &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "alice-edit"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "alice"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	alice := kubeClient(t, c, "alice")
	err = wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		review, err := alice.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: "create", Group: "vessel.dev", Resource: "virtualmachines",
			}},
		}, metav1.CreateOptions{})
		return err == nil && review.Status.Allowed, nil
	})
	if err != nil {
		t.Fatalf("alice never got edit in %s: %v", ns, err)
	}
	return ns
}

// vmManifest is a VM as alice writes it.
func vmManifest(ns, name string, cpus int, memory, blank string) string {
	return fmt.Sprintf(`apiVersion: vessel.dev/v1alpha1
kind: VirtualMachine
metadata: {name: %s, namespace: %s}
spec:
  runStrategy: Halted
  cpus: %d
  memory: %s
  disks:
  - name: data
    blank: {size: %s}
`, name, ns, cpus, memory, blank)
}

// A ResourceQuota bounds what alice may run: VM count, vCPUs, memory and
// disk, snapshots; past a limit kubectl shows the standard "exceeded quota"
// refusal, `kubectl describe quota` shows what her VMs use, and deleting a
// VM gives its share back.
func TestResourceQuotaBoundsVMs(t *testing.T) {
	c := controlPlane(t)
	ns := tenantNamespace(t)
	admin := newKubectl(t, c, launcher.AdminKubeconfig)
	alice := newKubectl(t, c, "alice")
	admin.okStdin(fmt.Sprintf(`apiVersion: v1
kind: ResourceQuota
metadata: {name: vessel, namespace: %s}
spec:
  hard:
    count/virtualmachines.vessel.dev: "2"
    count/virtualmachinesnapshots.vessel.dev: "1"
    vessel.dev/requests.cpu: "3"
    vessel.dev/requests.memory: 384Mi
    vessel.dev/requests.storage: 1Gi
`, ns), "apply", "-f", "-")
	core := kubeClient(t, c, launcher.AdminKubeconfig)
	waitUsed := func(name corev1.ResourceName, want string) {
		t.Helper()
		var last corev1.ResourceList
		err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			q, err := core.CoreV1().ResourceQuotas(ns).Get(ctx, "vessel", metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			last = q.Status.Used
			used, ok := q.Status.Used[name]
			return ok && used.Cmp(resource.MustParse(want)) == 0, nil
		})
		if err != nil {
			t.Fatalf("quota used %s never became %s; used: %v", name, want, last)
		}
	}
	// The vessel-apiserver's quota controller fills in the status that
	// admission checks against.
	waitUsed("count/virtualmachines.vessel.dev", "0")

	alice.okStdin(vmManifest(ns, "one", 1, "128Mi", "512Mi"), "apply", "-f", "-")
	describe := alice.ok("describe", "quota", "vessel", "-n", ns)
	t.Logf("alice's kubectl describe quota:\n%s", describe)
	for _, row := range [][]string{
		{"count/virtualmachines.vessel.dev", "1", "2"},
		{"vessel.dev/requests.cpu", "1", "3"},
		{"vessel.dev/requests.memory", "128Mi", "384Mi"},
		{"vessel.dev/requests.storage", "512Mi", "1Gi"},
	} {
		if !hasRow(describe, row) {
			t.Errorf("kubectl describe quota lacks the row %q:\n%s", row, describe)
		}
	}

	refused := func(manifest, want string) {
		t.Helper()
		out := alice.failsStdin(manifest, "apply", "-f", "-")
		if !strings.Contains(out, "is forbidden: exceeded quota: vessel, "+want) {
			t.Errorf("refusal %q lacks %q", out, want)
		}
	}
	refused(vmManifest(ns, "cpu", 3, "128Mi", "64Mi"),
		"requested: vessel.dev/requests.cpu=3, used: vessel.dev/requests.cpu=1, limited: vessel.dev/requests.cpu=3")
	refused(vmManifest(ns, "memory", 1, "512Mi", "64Mi"),
		"requested: vessel.dev/requests.memory=512Mi, used: vessel.dev/requests.memory=128Mi, limited: vessel.dev/requests.memory=384Mi")
	refused(vmManifest(ns, "disk", 1, "128Mi", "768Mi"),
		"requested: vessel.dev/requests.storage=768Mi, used: vessel.dev/requests.storage=512Mi, limited: vessel.dev/requests.storage=1Gi")
	// Growing a VM is charged the difference.
	out := alice.fails("patch", "vm", "one", "-n", ns, "--type=merge", "-p", `{"spec":{"memory":"1Gi"}}`)
	if !strings.Contains(out, "exceeded quota: vessel, requested: vessel.dev/requests.memory=896Mi") {
		t.Errorf("growing a VM past the quota: %s", out)
	}

	alice.okStdin(vmManifest(ns, "two", 1, "128Mi", "64Mi"), "apply", "-f", "-")
	refused(vmManifest(ns, "three", 1, "96Mi", "64Mi"),
		"requested: count/virtualmachines.vessel.dev=1, used: count/virtualmachines.vessel.dev=2, limited: count/virtualmachines.vessel.dev=2")

	alice.okStdin(fmt.Sprintf("apiVersion: vessel.dev/v1alpha1\nkind: VirtualMachineSnapshot\nmetadata: {name: s1, namespace: %s}\nspec: {virtualMachineName: one}\n", ns), "apply", "-f", "-")
	refused(fmt.Sprintf("apiVersion: vessel.dev/v1alpha1\nkind: VirtualMachineSnapshot\nmetadata: {name: s2, namespace: %s}\nspec: {virtualMachineName: one}\n", ns),
		"requested: count/virtualmachinesnapshots.vessel.dev=1, used: count/virtualmachinesnapshots.vessel.dev=1, limited: count/virtualmachinesnapshots.vessel.dev=1")

	// Deleting a VM gives its share back.
	alice.ok("delete", "vm", "two", "-n", ns)
	waitUsed("count/virtualmachines.vessel.dev", "1")
	waitUsed("vessel.dev/requests.memory", "128Mi")
	alice.okStdin(vmManifest(ns, "three", 1, "96Mi", "64Mi"), "apply", "-f", "-")
	waitUsed("vessel.dev/requests.memory", "224Mi")
}

// hasRow says a `kubectl describe` table has a line with exactly these fields.
func hasRow(out string, row []string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.Join(strings.Fields(line), " ") == strings.Join(row, " ") {
			return true
		}
	}
	return false
}
