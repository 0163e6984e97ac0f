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

package integration

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apiserver/agentidentity"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
)

// asAgent is a client acting as the agent of hypervisor. It impersonates
// the agent's identity with system:masters added, since this server has no
// RBAC to grant it anything: what remains refused is refused by Vessel's
// own agent checks, not by RBAC.
func asAgent(t *testing.T, s *apiservertesting.TestServer, hypervisor string, extra map[string][]string) versioned.Interface {
	t.Helper()
	cfg := rest.CopyConfig(s.ClientConfig)
	name := agentidentity.UserPrefix + hypervisor
	groups := []string{agentidentity.Group, "system:masters"}
	if extra != nil {
		name, groups = "system:serviceaccount:vessel-system:vessel-agent", []string{"system:masters"}
	}
	cfg.Impersonate = rest.ImpersonationConfig{UserName: name, Groups: groups, Extra: extra}
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// An agent reads only the VMs bound to its hypervisor: lists and watches
// must say spec.nodeName=<it>, and another node's VM does not exist for it.
func TestAgentsReadOnlyTheirVMs(t *testing.T) {
	s := startServer(t)
	ns := unique(t)
	createVM(t, s, ns, newVM("mine"))
	createVM(t, s, ns, newVM("theirs"))
	createVM(t, s, ns, newVM("pending"))
	bindVM(t, s, ns, "mine", "hv1")
	bindVM(t, s, ns, "theirs", "hv2")

	for name, agent := range map[string]versioned.Interface{
		"certificate":       asAgent(t, s, "hv1", nil),
		"pod-bound account": asAgent(t, s, "", map[string][]string{agentidentity.NodeNameExtra: {"hv1"}}),
	} {
		t.Run(name, func(t *testing.T) {
			vms := agent.VesselV1alpha1().VirtualMachines(ns)
			_, err := vms.List(t.Context(), metav1.ListOptions{})
			wantAPIError(t, err, 403, "may only list VirtualMachines bound to its hypervisor: add the field selector spec.nodeName=hv1")
			_, err = agent.VesselV1alpha1().VirtualMachines(metav1.NamespaceAll).Watch(t.Context(), metav1.ListOptions{})
			wantAPIError(t, err, 403, "may only watch VirtualMachines bound to its hypervisor")
			_, err = vms.List(t.Context(), metav1.ListOptions{FieldSelector: "spec.nodeName=hv2"})
			wantAPIError(t, err, 403, "spec.nodeName=hv1")

			list, err := vms.List(t.Context(), metav1.ListOptions{FieldSelector: "spec.nodeName=hv1"})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Items) != 1 || list.Items[0].Name != "mine" {
				t.Errorf("listed %v, want only mine", vmNames(list))
			}
			w, err := vms.Watch(t.Context(), metav1.ListOptions{FieldSelector: "spec.nodeName=hv1"})
			if err != nil {
				t.Fatalf("watch with the selector: %v", err)
			}
			w.Stop()

			if _, err := vms.Get(t.Context(), "mine", metav1.GetOptions{}); err != nil {
				t.Errorf("get its own VM: %v", err)
			}
			for _, other := range []string{"theirs", "pending"} {
				_, err := vms.Get(t.Context(), other, metav1.GetOptions{})
				wantAPIError(t, err, 404, `"`+other+`" not found`)
				err = agent.VesselV1alpha1().RESTClient().Get().Namespace(ns).Resource("virtualmachines").Name(other).SubResource("status").Do(t.Context()).Error()
				wantAPIError(t, err, 404, `"`+other+`" not found`)
			}
		})
	}

	t.Run("a service account token bound to no node", func(t *testing.T) {
		agent := asAgent(t, s, "", map[string][]string{"other": {"x"}})
		_, err := agent.VesselV1alpha1().VirtualMachines(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "spec.nodeName=hv1"})
		wantAPIError(t, err, 403, "is an agent only with a token bound to a pod on a node")
	})
	t.Run("the admin lists everything", func(t *testing.T) {
		list, err := vms(s, ns).List(t.Context(), metav1.ListOptions{})
		if err != nil || len(list.Items) != 3 {
			t.Errorf("admin listed %d VMs, %v; want 3", len(list.Items), err)
		}
	})
}

// The userdata subresource answers only the agent of the VM's hypervisor.
// This server has no kube-apiserver, so user data from a Secret is a 503
// here; the e2e suite reads a real Secret.
func TestUserDataOnlyForTheBoundAgent(t *testing.T) {
	s := startServer(t)
	ns := unique(t)
	inline := newVM("inline")
	inline.Spec.Disks = []v1alpha1.Disk{{Name: "seed", CloudInit: &v1alpha1.CloudInitSource{UserData: "#!/bin/sh\necho inline\n"}}}
	createVM(t, s, ns, inline)
	fromSecret := newVM("from-secret")
	fromSecret.Spec.Disks = []v1alpha1.Disk{{Name: "seed", CloudInit: &v1alpha1.CloudInitSource{UserDataSecretRef: &v1alpha1.SecretKeyReference{Name: "seed"}}}}
	created := createVM(t, s, ns, fromSecret)
	if key := created.Spec.Disks[0].CloudInit.UserDataSecretRef.Key; key != v1alpha1.DefaultUserDataSecretKey {
		t.Errorf("userDataSecretRef.key defaulted to %q, want %q", key, v1alpha1.DefaultUserDataSecretKey)
	}
	createVM(t, s, ns, newVM("no-seed"))
	createVM(t, s, ns, newVM("unbound"))
	for _, name := range []string{"inline", "from-secret", "no-seed"} {
		bindVM(t, s, ns, name, "hv1")
	}

	// Result.Error decodes the API status an error carries; DoRaw would not.
	userdata := func(client versioned.Interface, name string) ([]byte, error) {
		result := client.VesselV1alpha1().RESTClient().Get().Namespace(ns).Resource("virtualmachines").Name(name).SubResource("userdata").Do(t.Context())
		data, _ := result.Raw()
		return data, result.Error()
	}
	hv1, hv2 := asAgent(t, s, "hv1", nil), asAgent(t, s, "hv2", nil)
	data, err := userdata(hv1, "inline")
	if err != nil || string(data) != "#!/bin/sh\necho inline\n" {
		t.Errorf("hv1's agent got %q, %v; want the inline user data", data, err)
	}
	_, err = userdata(hv1, "from-secret")
	wantAPIError(t, err, 503, "takes its user data from Secret seed (spec.disks[0].cloudInit.userDataSecretRef)")
	_, err = userdata(hv1, "no-seed")
	wantAPIError(t, err, 404, "has no cloudInit disk")
	_, err = userdata(hv2, "inline")
	wantAPIError(t, err, 403, "is bound to hypervisor hv1, not to \"hv2\"")
	_, err = userdata(hv1, "unbound")
	wantAPIError(t, err, 403, "is not bound to a hypervisor")
	_, err = userdata(s.Client, "inline")
	wantAPIError(t, err, 403, "is no node agent")
}
