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
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher"
)

// agentKubeconfig writes a kubeconfig for the node agent of hypervisor: a
// client certificate for system:vessel-agent:<hypervisor> in
// system:vessel-agents, as the launcher gives its agent.
func agentKubeconfig(t *testing.T, c *launcher.Cluster, hypervisor string) string {
	t.Helper()
	ck, err := c.PKI.EnsureClientCert("agent-"+hypervisor, "system:vessel-agent:"+hypervisor, []string{"system:vessel-agents"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "agent.kubeconfig")
	if err := c.WriteKubeconfig(path, "agent-"+hypervisor, ck); err != nil {
		t.Fatal(err)
	}
	return path
}

// clientConfig loads a kubeconfig, without client-side throttling.
func clientConfig(t *testing.T, path string) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	return cfg
}

// agentRow is one request of the agent matrix: what an agent does, and the
// answer it must get. says is what a refusal's message contains: which of
// the vessel-apiserver's agent checks refused it, and why.
type agentRow struct {
	name string
	do   func(ctx context.Context) error
	code int
	says string
}

// TestAgentMatrix sends what a node agent may and may not do, as a real
// agent certificate through kube-apiserver: RBAC (vessel.dev:agent) lets
// agents at Hypervisors, VMs, their status and user data in general; the
// vessel-apiserver confines each to its own Hypervisor and the VMs bound to
// it, for reads (agent authorizer, storage) as for writes (admission).
func TestAgentMatrix(t *testing.T) {
	c := controlPlane(t)
	ctx := t.Context()
	ns := newNamespace(t, c)
	self, other := uniqueName("hv-self"), uniqueName("hv-other")
	admin := vesselClient(t, c, launcher.AdminKubeconfig)
	agentCfg := clientConfig(t, agentKubeconfig(t, c, self))
	agent, err := versioned.NewForConfig(agentCfg)
	if err != nil {
		t.Fatal(err)
	}
	agentCore, err := kubernetes.NewForConfig(agentCfg)
	if err != nil {
		t.Fatal(err)
	}
	newcomerName := uniqueName("hv-new")
	newAgent, err := versioned.NewForConfig(clientConfig(t, agentKubeconfig(t, c, newcomerName)))
	if err != nil {
		t.Fatal(err)
	}

	// The admin's fixtures: both hypervisors, a VM bound to each (the
	// agent's with its user data in a Secret), one unbound.
	hvs := admin.VesselV1alpha1().Hypervisors()
	for _, name := range []string{self, other} {
		if _, err := hvs.Create(ctx, &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"zone": "a"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = hvs.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	secretData := "#!/bin/sh\necho secret-user-data\n"
	if _, err := kubeClient(t, c, launcher.AdminKubeconfig).CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "seed"},
		StringData: map[string]string{"userdata": secretData},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vms := admin.VesselV1alpha1().VirtualMachines(ns)
	for name, node := range map[string]string{"mine": self, "theirs": other, "unbound": ""} {
		vm := newVM(ns, name, v1alpha1.RunStrategyHalted)
		vm.Spec.Disks = append(vm.Spec.Disks, v1alpha1.Disk{Name: "seed", CloudInit: &v1alpha1.CloudInitSource{
			UserDataSecretRef: &v1alpha1.SecretKeyReference{Name: "seed"},
		}})
		if _, err := vms.Create(ctx, vm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if node != "" {
			if _, err := vms.Bind(ctx, name, &v1alpha1.VirtualMachineBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Target: node}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}

	a := agent.VesselV1alpha1()
	selfSelector := metav1.ListOptions{FieldSelector: "spec.nodeName=" + self}
	userdata := func(name string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			result := a.RESTClient().Get().Namespace(ns).Resource("virtualmachines").Name(name).SubResource("userdata").Do(ctx)
			data, _ := result.Raw()
			if err := result.Error(); err != nil {
				return err
			}
			if string(data) != secretData {
				t.Errorf("user data of %s = %q, want the Secret's %q", name, data, secretData)
			}
			return nil
		}
	}
	writeStatus := func(name string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := a.VirtualMachines(ns).Patch(ctx, name, types.MergePatchType, []byte(`{"status":{"consoleLogBytes":1}}`), metav1.PatchOptions{}, "status")
			return err
		}
	}
	patchHypervisor := func(name, patch string, subresources ...string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := a.Hypervisors().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, subresources...)
			return err
		}
	}
	rows := []agentRow{
		// Reads of VMs: only its own.
		{"lists every VM", func(ctx context.Context) error {
			_, err := agent.VesselV1alpha1().VirtualMachines("").List(ctx, metav1.ListOptions{})
			return err
		}, 403, "may only list VirtualMachines bound to its hypervisor: add the field selector spec.nodeName=" + self},
		{"watches a namespace's VMs", func(ctx context.Context) error {
			w, err := a.VirtualMachines(ns).Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		}, 403, "may only watch VirtualMachines bound to its hypervisor"},
		{"lists another hypervisor's VMs", func(ctx context.Context) error {
			_, err := a.VirtualMachines("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + other})
			return err
		}, 403, "add the field selector spec.nodeName=" + self},
		{"lists its VMs", func(ctx context.Context) error {
			list, err := a.VirtualMachines("").List(ctx, selfSelector)
			if err == nil && (len(list.Items) != 1 || list.Items[0].Name != "mine") {
				t.Errorf("listed %d VMs, want only mine", len(list.Items))
			}
			return err
		}, 200, ""},
		{"watches its VMs", func(ctx context.Context) error {
			w, err := a.VirtualMachines("").Watch(ctx, selfSelector)
			if err == nil {
				w.Stop()
			}
			return err
		}, 200, ""},
		{"gets its VM", func(ctx context.Context) error {
			_, err := a.VirtualMachines(ns).Get(ctx, "mine", metav1.GetOptions{})
			return err
		}, 200, ""},
		{"gets another hypervisor's VM", func(ctx context.Context) error {
			_, err := a.VirtualMachines(ns).Get(ctx, "theirs", metav1.GetOptions{})
			return err
		}, 404, `"theirs" not found`},
		{"gets an unbound VM", func(ctx context.Context) error {
			_, err := a.VirtualMachines(ns).Get(ctx, "unbound", metav1.GetOptions{})
			return err
		}, 404, `"unbound" not found`},
		// User data: its VMs', through the vessel-apiserver, never Secrets.
		{"reads its VM's user data", userdata("mine"), 200, ""},
		{"reads another hypervisor's VM's user data", userdata("theirs"), 403, "is bound to hypervisor " + other + ", not to \"" + self + "\""},
		{"reads the Secret itself", func(ctx context.Context) error {
			_, err := agentCore.CoreV1().Secrets(ns).Get(ctx, "seed", metav1.GetOptions{})
			return err
		}, 403, `cannot get resource "secrets"`},
		// Writes: status of its VMs, its Hypervisor's status.
		{"writes its VM's status", writeStatus("mine"), 200, ""},
		{"writes another hypervisor's VM's status", writeStatus("theirs"), 403, "is bound to \"" + other + "\", not to this hypervisor"},
		// Status is status only: what selects, holds or owns the VM is not
		// the agent's to change there.
		{"relabels, holds and re-owns its VM through status", func(ctx context.Context) error {
			patch := `{"metadata":{"labels":{"app":"forged"},"finalizers":["example.com/hold"],` +
				`"ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"x","uid":"6b1a0c2e-0a7e-4a3b-9a51-3a4f1f0c9d10"}]},"status":{"consoleLogBytes":2}}`
			vm, err := a.VirtualMachines(ns).Patch(ctx, "mine", types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
			if err == nil && (vm.Labels["app"] != "" || len(vm.OwnerReferences) != 0 || slices.Contains(vm.Finalizers, "example.com/hold") || vm.Status.ConsoleLogBytes != 2) {
				t.Errorf("a status write changed metadata or lost status: labels %v, finalizers %v, owners %v, consoleLogBytes %d",
					vm.Labels, vm.Finalizers, vm.OwnerReferences, vm.Status.ConsoleLogBytes)
			}
			return err
		}, 200, ""},
		{"writes its Hypervisor's status", patchHypervisor(self, `{"status":{"agentVersion":"e2e"}}`, "status"), 200, ""},
		{"annotates its Hypervisor", patchHypervisor(self, `{"metadata":{"annotations":{"e2e":"yes"}}}`), 200, ""},
		{"relabels its Hypervisor", patchHypervisor(self, `{"metadata":{"labels":{"tenant":"team-b"}}}`), 403, "may not change the labels of its Hypervisor after it registered"},
		{"cordons its Hypervisor", patchHypervisor(self, `{"spec":{"unschedulable":true}}`), 403, "may not change the spec of its Hypervisor"},
		{"writes another Hypervisor's status", patchHypervisor(other, `{"status":{"agentVersion":"e2e"}}`, "status"), 403, "may only write its own Hypervisor"},
		{"deletes its Hypervisor", func(ctx context.Context) error { return a.Hypervisors().Delete(ctx, self, metav1.DeleteOptions{}) }, 403, `cannot delete resource "hypervisors"`},
		{"registers with an administrator's label", func(ctx context.Context) error {
			_, err := newAgent.VesselV1alpha1().Hypervisors().Create(ctx, &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{
				Name:   newcomerName,
				Labels: map[string]string{"node-restriction.vessel.dev/dedicated": "team-b"},
			}}, metav1.CreateOptions{})
			return err
		}, 403, "labels under node-restriction.vessel.dev/ are set by an administrator"},
		// Snapshots and restores carry no user data: agents watch them all.
		{"lists every snapshot", func(ctx context.Context) error {
			_, err := a.VirtualMachineSnapshots("").List(ctx, metav1.ListOptions{})
			return err
		}, 200, ""},
	}
	for _, row := range rows {
		t.Run("agent "+row.name, func(t *testing.T) {
			err := row.do(t.Context())
			if code := statusCode(err); code != row.code {
				t.Fatalf("answered %d, want %d: %v", code, row.code, err)
			}
			if row.code >= 300 && !strings.Contains(err.Error(), row.says) {
				t.Errorf("refusal %q lacks %q", err.Error(), row.says)
			}
			if row.code == http.StatusForbidden && !apierrors.IsForbidden(err) {
				t.Errorf("not a Forbidden: %v", err)
			}
		})
	}
	if hv, err := hvs.Get(ctx, self, metav1.GetOptions{}); err != nil || hv.Labels["tenant"] != "" || hv.Spec.Unschedulable {
		t.Errorf("the agent's refused writes changed its Hypervisor: %+v, %v", hv, err)
	}
}
