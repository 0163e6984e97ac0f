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
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher"
)

// manifests/cluster runs agents as the service account
// vessel-system:vessel-agent of a DaemonSet: kube-apiserver binds each
// pod's token to its node, and the vessel-apiserver takes that node as the
// agent's Hypervisor. Here a pod object on a node object (nothing runs
// it) gets such a token, as the kubelet would request it, and acts as an
// agent through kube-apiserver.
func TestAgentIdentityIsBoundToItsNode(t *testing.T) {
	c := controlPlane(t)
	ctx := t.Context()
	core := kubeClient(t, c, launcher.AdminKubeconfig)
	const namespace, account = "vessel-system", "vessel-agent"
	if _, err := core.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: account}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	node := uniqueName("node")
	if _, err := core.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = core.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{}) })
	pod, err := core.CoreV1().Pods(namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: uniqueName("vessel-agent")},
		Spec: corev1.PodSpec{
			ServiceAccountName:           account,
			AutomountServiceAccountToken: new(bool),
			NodeName:                     node,
			Containers:                   []corev1.Container{{Name: "agent", Image: "vessel-agent"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		_ = core.CoreV1().Pods(namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	token := func(bound *authenticationv1.BoundObjectReference) versioned.Interface {
		t.Helper()
		expiry := int64(600)
		tr, err := core.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, account, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: bound, ExpirationSeconds: &expiry},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		admin := restConfig(t, c, launcher.AdminKubeconfig)
		cfg := &rest.Config{Host: admin.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData, CAFile: admin.CAFile}, QPS: -1}
		client, err := versioned.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return client
	}
	agent := token(&authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID})

	hvs := agent.VesselV1alpha1().Hypervisors()
	if _, err := hvs.Create(ctx, &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the agent of node %s registers its Hypervisor: %v", node, err)
	}
	t.Cleanup(func() {
		_ = vesselClient(t, c, launcher.AdminKubeconfig).VesselV1alpha1().Hypervisors().Delete(context.Background(), node, metav1.DeleteOptions{})
	})
	if _, err := agent.VesselV1alpha1().VirtualMachines("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node}); err != nil {
		t.Errorf("the agent lists its VMs: %v", err)
	}
	_, err = agent.VesselV1alpha1().VirtualMachines("").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "agent "+node+" may only list VirtualMachines bound to its hypervisor") {
		t.Errorf("the agent lists every VM: %v", err)
	}
	_, err = hvs.Create(ctx, &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("elsewhere")}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may only write its own Hypervisor") {
		t.Errorf("the agent of %s registers another Hypervisor: %v", node, err)
	}

	// The same account's token bound to no pod names no node: it is no
	// hypervisor's agent.
	unbound := token(nil)
	_, err = unbound.VesselV1alpha1().VirtualMachines("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "is an agent only with a token bound to a pod on a node") {
		t.Errorf("a token bound to no pod lists the node's VMs: %v", err)
	}
}

// User data in a Secret stays out of the viewer's reach: bob (view in
// team-b) reads the VM and sees only the reference, may not read the
// Secret (view never reads Secrets), nor the user data through Vessel.
func TestViewersDoNotSeeUserDataFromSecrets(t *testing.T) {
	c := controlPlane(t)
	ctx := t.Context()
	const secretData = "#cloud-config\npassword: VESSEL-SECRET-PASSWORD\n"
	core := kubeClient(t, c, launcher.AdminKubeconfig)
	secret := uniqueName("seed")
	if _, err := core.CoreV1().Secrets(teamB).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secret},
		StringData: map[string]string{"userdata": secretData},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = core.CoreV1().Secrets(teamB).Delete(context.Background(), secret, metav1.DeleteOptions{}) })
	name := uniqueName("seeded")
	vm := newVM(teamB, name, v1alpha1.RunStrategyHalted)
	vm.Spec.Disks = append(vm.Spec.Disks, v1alpha1.Disk{Name: "seed", CloudInit: &v1alpha1.CloudInitSource{UserDataSecretRef: &v1alpha1.SecretKeyReference{Name: secret}}})
	admin := vesselClient(t, c, launcher.AdminKubeconfig)
	if _, err := admin.VesselV1alpha1().VirtualMachines(teamB).Create(ctx, vm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.VesselV1alpha1().VirtualMachines(teamB).Delete(context.Background(), name, metav1.DeleteOptions{})
	})

	bob := newKubectl(t, c, "bob")
	out := bob.ok("get", "vm", name, "-n", teamB, "-o", "yaml")
	if !strings.Contains(out, "userDataSecretRef:") || !strings.Contains(out, "name: "+secret) || strings.Contains(out, "VESSEL-SECRET-PASSWORD") {
		t.Errorf("bob's view of the VM:\n%s\nwant the reference to %s and not the data", out, secret)
	}
	if out := bob.fails("get", "secret", secret, "-n", teamB, "-o", "yaml"); !strings.Contains(out, `cannot get resource "secrets"`) {
		t.Errorf("bob reads the Secret: %s", out)
	}
	if out := bob.fails("get", "--raw", "/apis/vessel.dev/v1alpha1/namespaces/"+teamB+"/virtualmachines/"+name+"/userdata"); !strings.Contains(out, `cannot get resource "virtualmachines/userdata"`) {
		t.Errorf("bob reads the user data through Vessel: %s", out)
	}
}
