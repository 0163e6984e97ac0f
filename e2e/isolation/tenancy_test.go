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

package isolation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
)

// The attack: a 128Mi VM bound to a hypervisor is stopped, resized
// to the host's memory and started, and the host kills other tenants'
// guests. The resize is refused, with the field and the room left.
func TestVMCannotGrowPastItsHypervisor(t *testing.T) {
	e := env(t)
	manifest := strings.Replace(vmYAML("grow", "  - name: scratch\n    blank: {size: 64Mi}\n"), "runStrategy: Always", "runStrategy: Halted", 1)
	if out, err := applyAsAlice(t, e, manifest); err != nil {
		t.Fatalf("alice's kubectl apply: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = e.Kubectl(t, "admin", "-n", ns, "delete", "vm", "grow", "--wait=false") })
	vm := e.WaitVM(t, ns, "grow", time.Minute, "bound", func(vm *v1alpha1.VirtualMachine) bool { return vm.Spec.NodeName != "" })
	// Another tenant's VM on the same hypervisor.
	neighbour := framework.GuestVM("team-b", "neighbour")
	neighbour.Spec.RunStrategy = v1alpha1.RunStrategyHalted
	neighbour.Spec.Memory = resource.MustParse("256Mi")
	neighbour.Spec.NodeSelector = map[string]string{v1alpha1.LabelHypervisor: vm.Spec.NodeName}
	if _, err := e.Admin.VesselV1alpha1().VirtualMachines("team-b").Create(t.Context(), neighbour, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.Kubectl(t, "admin", "-n", "team-b", "delete", "vm", "neighbour", "--wait=false") })
	e.WaitVM(t, "team-b", "neighbour", time.Minute, "bound", func(n *v1alpha1.VirtualMachine) bool { return n.Spec.NodeName == vm.Spec.NodeName })
	hv, err := e.Admin.VesselV1alpha1().Hypervisors().Get(t.Context(), vm.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	whole := hv.Status.Allocatable.Memory.String()
	out, err := e.Kubectl(t, "alice", "-n", ns, "patch", "vm", "grow", "--type=merge", "-p", fmt.Sprintf(`{"spec":{"memory":%q}}`, whole))
	t.Logf("alice resizes her VM to the host's %s:\n%s", whole, out)
	if err == nil {
		t.Fatal("alice grew her VM to the whole host")
	}
	for _, want := range []string{"spec.memory", "hypervisor " + hv.Name + ", which runs this VM, has " + whole + " allocatable memory", "fit"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal lacks %q", want)
		}
	}
	// Growing within the room left is fine.
	e.MustKubectl(t, "alice", "-n", ns, "patch", "vm", "grow", "--type=merge", "-p", `{"spec":{"memory":"192Mi"}}`)
	got, err := e.Admin.VesselV1alpha1().VirtualMachines(ns).Get(t.Context(), "grow", metav1.GetOptions{})
	if err != nil || got.Spec.Memory.Cmp(resource.MustParse("192Mi")) != 0 {
		t.Errorf("memory after the allowed resize: %v, %v", got.Spec.Memory.String(), err)
	}
}

// A bridge puts a guest on whatever network it joins (cni0 is the pod
// network, docker0 the host's containers): only bridges the operator
// allow-lists are accepted, and this control plane allows none.
func TestBridgesAreAllowListed(t *testing.T) {
	e := env(t)
	manifest := vmYAML("on-docker0", "  - name: scratch\n    blank: {size: 64Mi}\n") +
		"  interfaces:\n  - name: lan\n    type: Bridge\n    bridge: docker0\n"
	out, err := applyAsAlice(t, e, manifest)
	if err == nil {
		_, _ = e.Kubectl(t, "admin", "-n", ns, "delete", "vm", "on-docker0", "--wait=false")
		t.Fatalf("alice put a VM on docker0:\n%s", out)
	}
	want := "spec.interfaces[0].bridge: Forbidden: this server allows no bridge interfaces: the operator allow-lists host bridges with --allowed-bridges"
	if !strings.Contains(out, want) {
		t.Errorf("the refusal lacks %q:\n%s", want, out)
	}
}

// newUser gives a user a client certificate, a kubeconfig that e.Kubectl
// finds, and the rules in namespace ns.
func newUser(t *testing.T, e *framework.Env, name string, rules []rbacv1.PolicyRule) *kubernetes.Clientset {
	t.Helper()
	ck, err := e.Cluster.PKI.EnsureClientCert(name, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Cluster.WriteKubeconfig(e.Cluster.Kubeconfig(name), name, ck); err != nil {
		t.Fatal(err)
	}
	cfg, err := e.Cluster.AdminConfig()
	if err != nil {
		t.Fatal(err)
	}
	admin := kubernetes.NewForConfigOrDie(cfg)
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Rules: rules}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: name}},
	}
	if _, err := admin.RbacV1().Roles(ns).Create(t.Context(), role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(t.Context(), binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	userCfg, err := clientcmd.BuildConfigFromFlags("", e.Cluster.Kubeconfig(name))
	if err != nil {
		t.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(userCfg)
	err = wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		review, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: rules[len(rules)-1].Verbs[0], Group: "vessel.dev", Resource: "virtualmachines", Subresource: "console",
			}},
		}, metav1.CreateOptions{})
		return err == nil && review.Status.Allowed, nil
	})
	if err != nil {
		t.Fatalf("%s's role never took effect: %v", name, err)
	}
	return client
}

// consoleSession is a WebSocket console through kube-apiserver as a user.
type consoleSession struct {
	stdin *io.PipeWriter
	out   *lockedBuffer
	done  chan error
}

func openConsole(t *testing.T, e *framework.Env, user, vm, query string) *consoleSession {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", e.Cluster.Kubeconfig(user))
	if err != nil {
		t.Fatal(err)
	}
	url := e.Admin.VesselV1alpha1().RESTClient().Get().Namespace(ns).Resource("virtualmachines").Name(vm).SubResource("console").URL().String() + query
	exec, err := remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, url)
	if err != nil {
		t.Fatal(err)
	}
	r, w := io.Pipe()
	s := &consoleSession{stdin: w, out: &lockedBuffer{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); w.Close() })
	go func() {
		s.done <- exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: r, Stdout: s.out, Tty: true})
	}()
	return s
}

func (s *consoleSession) expect(t *testing.T, who, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(s.out.String(), want) {
		select {
		case err := <-s.done:
			t.Fatalf("%s's console ended (%v) before showing %q; it showed %q", who, err, want, s.out.String())
		case <-deadline:
			t.Fatalf("%s's console did not show %q; it showed %q", who, want, s.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *consoleSession) send(t *testing.T, text string) {
	t.Helper()
	if _, err := s.stdin.Write([]byte(text)); err != nil {
		t.Fatal(err)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Typing into a guest needs create on virtualmachines/console, as
// Kubernetes requires for pods/exec over WebSockets: carol, who may only
// get it, has a console whose input goes nowhere, with a notice saying
// why, while output still flows. And a VM takes only so many sessions.
func TestConsoleInputNeedsCreate(t *testing.T) {
	e := env(t)
	newUser(t, e, "carol", []rbacv1.PolicyRule{
		{APIGroups: []string{"vessel.dev"}, Resources: []string{"virtualmachines"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"vessel.dev"}, Resources: []string{"virtualmachines/console"}, Verbs: []string{"get"}},
	})
	vm := e.RunningVM(t, ns, "console-ro")
	t.Cleanup(func() { _, _ = e.Kubectl(t, "admin", "-n", ns, "delete", "vm", "console-ro", "--wait=false") })

	carol := openConsole(t, e, "carol", vm.Name, "?tailBytes=65536")
	carol.expect(t, "carol", "VESSEL-BOOT done") // output flows
	carol.send(t, "echo CAROL-$((6*7))\r")
	carol.expect(t, "carol", "[vessel: this session is read-only (you may get but not create virtualmachines/console): input is ignored]")

	alice := openConsole(t, e, "alice", vm.Name, "")
	alice.send(t, "\recho ALICE-$((6*7))\r")
	alice.expect(t, "alice", "ALICE-42")
	carol.expect(t, "carol", "ALICE-42") // carol watches what alice does
	if log := e.ConsoleLog(vm); strings.Contains(log, "CAROL-42") {
		t.Errorf("carol's input reached the guest:\n%s", log)
	}

	// An SPDY console is a POST, which RBAC authorizes as create: carol
	// is refused outright.
	carolCfg, err := clientcmd.BuildConfigFromFlags("", e.Cluster.Kubeconfig("carol"))
	if err != nil {
		t.Fatal(err)
	}
	err = versioned.NewForConfigOrDie(carolCfg).VesselV1alpha1().RESTClient().Post().Namespace(ns).Resource("virtualmachines").
		Name(vm.Name).SubResource("console").Do(t.Context()).Error()
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `cannot create resource "virtualmachines/console"`) {
		t.Errorf("carol's POST to the console: %v, want RBAC's 403", err)
	}

	t.Run("a VM takes at most 10 console sessions", func(t *testing.T) {
		// carol's and alice's are two; eight more fill the VM up.
		for i := 0; i < 8; i++ {
			openConsole(t, e, "alice", vm.Name, "?readOnly=true")
		}
		var last *consoleSession
		err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			last = openConsole(t, e, "alice", vm.Name, "?readOnly=true")
			select {
			case err := <-last.done:
				last.done <- err
				return true, nil
			case <-time.After(2 * time.Second):
				return false, nil // attached: one of the others was not yet
			}
		})
		if err != nil {
			t.Fatal("an 11th session was never refused")
		}
		err = <-last.done
		var upgrade *httpstream.UpgradeFailureError
		var status *apierrors.StatusError
		want := "console of VM " + ns + "/" + vm.Name + ": the VM already has 10 console sessions, the most its agent allows"
		if !errors.As(err, &upgrade) || !errors.As(upgrade.Cause, &status) || status.Status().Code != http.StatusTooManyRequests ||
			!strings.Contains(status.Status().Message, want) {
			t.Errorf("the 11th session ended with %v, want a 429 saying %q", err, want)
		}
	})
}
