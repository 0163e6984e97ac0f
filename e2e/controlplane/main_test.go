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

// Package controlplane tests the vessel.dev API end to end through a real
// kube-apiserver (v1.37, built by `make deps`), the real kubectl and the
// vessel-apiserver behind its APIService, without a node agent: what
// kubectl users see (discovery, explain, columns, categories, server-side
// apply, patch, edit, wait, field selectors, delete), the RBAC of the
// shipped roles for real requests, the front-proxy trust boundary, and
// that a crash of the vessel-apiserver loses no acknowledged write.
//
//	VESSEL_E2E=1 go test ./e2e/controlplane/ -v
//
// Without the binaries in _output/bin every test skips, unless VESSEL_E2E
// is set. One control plane serves the whole package (TestMain); tests
// isolate themselves with their own namespaces or unique names.
package controlplane

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vessel-vm/vessel/launcher"
)

// The whole package shares one control plane: starting one takes several
// seconds, and every test isolates itself with its own names or namespace.
var (
	shared *launcher.Cluster
	// skipReason is set when the binaries are missing and VESSEL_E2E is
	// unset: every test then skips with it.
	skipReason string
	// kubectlBinary is the real kubectl: /usr/bin/kubectl unless KUBECTL
	// names another.
	kubectlBinary string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if missing := missingPrerequisites(); missing != nil {
		if os.Getenv("VESSEL_E2E") == "" {
			skipReason = fmt.Sprintf("no control plane to test (%v); run `make deps build`, or set VESSEL_E2E=1 to fail instead", missing)
			return m.Run()
		}
		fmt.Fprintf(os.Stderr, "VESSEL_E2E is set but the control plane cannot start: %v\n", missing)
		return 1
	}

	stateDir, err := os.MkdirTemp("", "vessel-e2e-controlplane-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	logf := func(string, ...any) {}
	if testing.Verbose() {
		logf = log.Printf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := launcher.Start(ctx, launcher.Options{
		StateDir: stateDir,
		NoAgent:  true,
		// As on kubeadm clusters: manifests/cluster runs the agent as a
		// privileged DaemonSet, which the default (false) refuses.
		KubeAPIServerArgs: []string{"--allow-privileged=true"},
		// VESSEL_E2E_FROM_IMAGES=1: the vessel-apiserver from the image
		// `make images` built, as `vessel-up --from-images` runs it.
		VesselAPIServerImage: fromImages(),
		Logf:                 logf,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start the control plane (state and logs kept in %s): %v\n", stateDir, err)
		return 1
	}
	if err := waitTenantRBAC(ctx, c); err != nil {
		c.Stop()
		fmt.Fprintf(os.Stderr, "tenant roles never became effective (logs in %s): %v\n", stateDir, err)
		return 1
	}
	shared = c
	code := m.Run()
	c.Stop()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "control plane state and logs kept in %s\n", stateDir)
	} else {
		os.RemoveAll(stateDir)
	}
	return code
}

// missingPrerequisites reports what the control plane needs and this
// machine lacks.
func missingPrerequisites() error {
	kubectlBinary = os.Getenv("KUBECTL")
	if kubectlBinary == "" {
		kubectlBinary = "/usr/bin/kubectl"
	}
	bin, err := launcher.DefaultBinDir()
	if err != nil {
		return err
	}
	var errs []error
	needed := []string{filepath.Join(bin, "etcd"), filepath.Join(bin, "kube-apiserver"), filepath.Join(bin, "kube-controller-manager")}
	if layout := fromImages(); layout != "" {
		needed = append(needed, filepath.Join(layout, "index.json"))
	} else {
		needed = append(needed, filepath.Join(bin, "vessel-apiserver"))
	}
	for _, file := range needed {
		if _, err := os.Stat(file); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Stat(kubectlBinary); err != nil {
		errs = append(errs, fmt.Errorf("kubectl (set KUBECTL to use another): %w", err))
	}
	return errors.Join(errs...)
}

// waitTenantRBAC waits until alice may drive VMs in team-a and bob may read
// them in team-b. Their access comes from vessel.dev:edit and view, which
// kube-controller-manager aggregates into edit and view asynchronously.
func waitTenantRBAC(ctx context.Context, c *launcher.Cluster) error {
	checks := []struct {
		user string
		attr authorizationv1.ResourceAttributes
	}{
		{"alice", authorizationv1.ResourceAttributes{Namespace: "team-a", Verb: "create", Group: "vessel.dev", Resource: "virtualmachines", Subresource: "start"}},
		{"alice", authorizationv1.ResourceAttributes{Namespace: "team-a", Verb: "get", Group: "vessel.dev", Resource: "virtualmachines", Subresource: "console"}},
		{"bob", authorizationv1.ResourceAttributes{Namespace: "team-b", Verb: "watch", Group: "vessel.dev", Resource: "virtualmachinerestores"}},
	}
	for _, check := range checks {
		cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig(check.user))
		if err != nil {
			return err
		}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			review, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &check.attr},
			}, metav1.CreateOptions{})
			return err == nil && review.Status.Allowed, nil
		})
		if err != nil {
			return fmt.Errorf("%s %+v: %w", check.user, check.attr, err)
		}
	}
	return nil
}

// controlPlane returns the shared control plane, or skips t when there is
// none to test.
func controlPlane(t *testing.T) *launcher.Cluster {
	t.Helper()
	// Checked again from inside a test, where `go test` records the
	// environment variables and files a test reads: a cached result is
	// then replayed only while VESSEL_E2E, KUBECTL and the binaries stay
	// the same (TestMain's reads, before m.Run, are not recorded).
	_ = os.Getenv("VESSEL_E2E")
	_ = missingPrerequisites()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	return shared
}

// fromImages is the vessel-apiserver's OCI layout from `make images` when
// VESSEL_E2E_FROM_IMAGES is set, else "" (the binary in _output/bin).
// go test runs in the package's directory.
func fromImages() string {
	if os.Getenv("VESSEL_E2E_FROM_IMAGES") == "" {
		return ""
	}
	return filepath.Join("..", "..", "_output", "images", "vessel-apiserver")
}
