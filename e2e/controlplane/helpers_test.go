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
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher"
)

// kubectl runs the real kubectl binary as one user.
type kubectl struct {
	t          *testing.T
	kubeconfig string
	// env is added to kubectl's environment: a discovery cache of the
	// test's own, out of ~/.kube, and whatever a test sets (EDITOR).
	env []string
}

func newKubectl(t *testing.T, c *launcher.Cluster, user string) *kubectl {
	return &kubectl{t: t, kubeconfig: c.Kubeconfig(user), env: []string{"KUBECACHEDIR=" + t.TempDir()}}
}

func (k *kubectl) run(stdin string, args ...string) (stdout, stderr string, err error) {
	k.t.Helper()
	cmd := exec.CommandContext(k.t.Context(), kubectlBinary, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), k.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// ok runs kubectl and fails the test when it fails.
func (k *kubectl) ok(args ...string) string {
	k.t.Helper()
	return k.okStdin("", args...)
}

func (k *kubectl) okStdin(stdin string, args ...string) string {
	k.t.Helper()
	stdout, stderr, err := k.run(stdin, args...)
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return stdout
}

// failsStdin runs kubectl, fails the test when it succeeds, and returns
// stderr.
func (k *kubectl) failsStdin(stdin string, args ...string) string {
	k.t.Helper()
	stdout, stderr, err := k.run(stdin, args...)
	if err == nil {
		k.t.Fatalf("kubectl %s succeeded, want an error:\n%s", strings.Join(args, " "), stdout)
	}
	return stderr
}

func (k *kubectl) fails(args ...string) string {
	k.t.Helper()
	return k.failsStdin("", args...)
}

// restConfig is a client configuration for user through kube-apiserver,
// without client-side throttling: the tests measure the servers, not
// client-go's rate limiter.
func restConfig(t testing.TB, c *launcher.Cluster, user string) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig(user))
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	return cfg
}

func vesselClient(t testing.TB, c *launcher.Cluster, user string) *versioned.Clientset {
	t.Helper()
	client, err := versioned.NewForConfig(restConfig(t, c, user))
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func kubeClient(t testing.TB, c *launcher.Cluster, user string) *kubernetes.Clientset {
	t.Helper()
	client, err := kubernetes.NewForConfig(restConfig(t, c, user))
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// uniqueName makes names that no other test, nor an earlier run against
// the same control plane, uses.
func uniqueName(prefix string) string {
	return prefix + "-" + utilrand.String(6)
}

// newNamespace creates a namespace of the test's own, deleted when the test
// ends (the namespace controller then deletes the VMs in it, through the
// aggregated API).
func newNamespace(t *testing.T, c *launcher.Cluster) string {
	t.Helper()
	client := kubeClient(t, c, launcher.AdminKubeconfig)
	ns, err := client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-" + sanitize(t.Name()) + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		err := client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// sanitize keeps what may appear in a namespace name, and keeps it short.
func sanitize(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if b.Len() >= 30 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	return b.String()
}

// newVM is a small VM that passes validation and needs nothing on a host
// until it is scheduled: with no agent here, it stays Pending.
func newVM(namespace, name string, strategy v1alpha1.RunStrategy) *v1alpha1.VirtualMachine {
	return &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: v1alpha1.VirtualMachineSpec{
			RunStrategy: strategy,
			CPUs:        1,
			Memory:      resource.MustParse("128Mi"),
			Disks:       []v1alpha1.Disk{{Name: "scratch", Blank: &v1alpha1.BlankSource{Size: resource.MustParse("64Mi")}}},
		},
	}
}

// statusCode is the HTTP status of an API call's outcome: 200 for success,
// the Status code for an API error, 0 when no answer came back.
func statusCode(err error) int {
	if err == nil {
		return 200
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return int(status.Status().Code)
	}
	return 0
}
