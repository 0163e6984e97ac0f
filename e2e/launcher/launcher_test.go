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

package launcher_test

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/launcher"
)

// TestControlPlane starts the whole local control plane and two
// hypervisors through the launcher and drives it with the real kubectl, as
// a user would after `make up`.
func TestControlPlane(t *testing.T) {
	kubectl := requireControlPlane(t)
	stateDir := stateDir(t)
	hypervisors := framework.HypervisorNames("e2e-launcher", 2)
	c, err := launcher.Start(t.Context(), launcher.Options{StateDir: stateDir, Hypervisors: hypervisors, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)

	t.Run("the agents registered the Hypervisors they were named, and only those", func(t *testing.T) {
		out := kubectl.ok(t, c.Kubeconfig("admin"), "get", "hypervisors", "-o", "name")
		var want []string
		for _, hv := range hypervisors {
			want = append(want, "hypervisor.vessel.dev/"+hv)
		}
		if got := strings.Fields(out); !slices.Equal(got, want) {
			t.Errorf("hypervisors = %v, want %v", got, want)
		}
	})

	// The quick start's tenants (manifests/local/tenants.yaml). edit and
	// view gain the vessel.dev rules through ClusterRole aggregation, which
	// kube-controller-manager does shortly after start: poll.
	t.Run("alice edits VMs in team-a, bob only views them in team-b", func(t *testing.T) {
		checks := []struct {
			user, verb, namespace string
			want                  string
		}{
			{"alice", "create", "team-a", "yes"},
			{"alice", "create", "team-b", "no"},
			{"bob", "list", "team-b", "yes"},
			{"bob", "create", "team-b", "no"},
		}
		deadline := time.Now().Add(time.Minute)
		for _, check := range checks {
			var got string
			for {
				// can-i exits 1 when the answer is no.
				stdout, _, _ := kubectl.run(t, c.Kubeconfig(check.user), "auth", "can-i", check.verb, "virtualmachines.vessel.dev", "-n", check.namespace)
				got = strings.TrimSpace(stdout)
				if got == check.want || time.Now().After(deadline) {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			if got != check.want {
				t.Errorf("%s may %s VMs in %s: %q, want %q", check.user, check.verb, check.namespace, got, check.want)
			}
		}
	})

	t.Run("admin lists namespaces", func(t *testing.T) {
		out := kubectl.ok(t, c.Kubeconfig("admin"), "get", "namespaces", "-o", "name")
		if !slices.Contains(strings.Fields(out), "namespace/default") {
			t.Errorf("namespace default not listed:\n%s", out)
		}
	})

	for _, user := range []string{"alice", "bob"} {
		t.Run(user+" is authenticated as "+user, func(t *testing.T) {
			got := kubectl.ok(t, c.Kubeconfig(user), "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
			if got != user {
				t.Errorf("whoami = %q, want %q", got, user)
			}
		})
	}

	t.Run("alice may not list namespaces", func(t *testing.T) {
		stderr := kubectl.fails(t, c.Kubeconfig("alice"), "get", "namespaces")
		want := `User "alice" cannot list resource "namespaces"`
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not contain %q:\n%s", want, stderr)
		}
	})

	t.Run("admin kubeconfig carries system:masters", func(t *testing.T) {
		got := kubectl.ok(t, c.Kubeconfig("admin"), "auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}")
		if !strings.Contains(got, "system:masters") {
			t.Errorf("admin groups = %s", got)
		}
	})
}

// TestControlPlaneSurvivesDownAndUp is `make up`, `make down`, `make up`:
// the second start reuses the PKI, ports and etcd data, so objects and
// kubeconfigs stay valid, and Down leaves nothing running.
func TestControlPlaneSurvivesDownAndUp(t *testing.T) {
	kubectl := requireControlPlane(t)
	stateDir := stateDir(t)
	opts := launcher.Options{StateDir: stateDir, Hypervisors: framework.HypervisorNames("e2e-launcher", 2), Logf: t.Logf}

	first, err := launcher.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.Stop)
	admin := first.Kubeconfig("admin")
	kubectl.ok(t, admin, "create", "namespace", "tenant-a")
	kubeconfigBefore, err := os.ReadFile(admin)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := launcher.Start(t.Context(), opts); err == nil || !strings.Contains(err.Error(), "already runs") {
		t.Fatalf("second Start on a running state directory: err = %v, want 'already runs'", err)
	}

	if err := launcher.Down(stateDir); err != nil {
		t.Fatal(err)
	}
	if pids, _ := filepath.Glob(filepath.Join(stateDir, "run", "*.pid")); len(pids) > 0 {
		t.Errorf("PID files left after Down: %v", pids)
	}
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(first.Ports.KubeAPIServer)), time.Second); err == nil {
		conn.Close()
		t.Errorf("kube-apiserver still accepts connections after Down")
	}

	second, err := launcher.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Stop)
	kubeconfigAfter, err := os.ReadFile(second.Kubeconfig("admin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kubeconfigBefore, kubeconfigAfter) {
		t.Error("admin kubeconfig changed across Down and Start")
	}
	kubectl.ok(t, admin, "get", "namespace", "tenant-a")
}

// stateDir is a state directory for one test, short enough for the
// libvirtd sockets under it; when the test ends, its control plane and
// hypervisors are destroyed and it is removed.
func stateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vessel-l-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := launcher.Destroy(dir); err != nil {
			t.Error(err)
		}
		os.RemoveAll(dir)
	})
	return dir
}

// kubectl runs the real kubectl binary.
type kubectl struct {
	path     string
	cacheDir string
}

// requireControlPlane skips when a binary the launcher starts has not been
// built or libvirtd (for the agent) does not run, unless VESSEL_E2E is set
// (CI sets it, so a missing prerequisite fails there), and builds etcd when
// it is missing, since that takes a minute, not seven.
func requireControlPlane(t *testing.T) kubectl {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("VESSEL_E2E") != "" {
			t.Fatalf("VESSEL_E2E is set but "+format, args...)
		}
		t.Skipf(format+" (set VESSEL_E2E=1 to fail instead)", args...)
	}
	bin, err := launcher.DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "vessel-apiserver", "vessel-agent"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			missing("%s is not built (run make deps build): %v", name, err)
		}
	}
	if reason := framework.MissingLibvirt(); reason != "" {
		missing("%s", reason)
	}
	if _, err := os.Stat(filepath.Join(bin, "etcd")); err != nil {
		root, err := launcher.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(filepath.Join(root, "hack", "build-etcd.sh")).CombinedOutput()
		if err != nil {
			t.Fatalf("build etcd: %v\n%s", err, out)
		}
	}

	path := os.Getenv("KUBECTL")
	if path == "" {
		path = "/usr/bin/kubectl"
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("kubectl (set KUBECTL to use another): %v", err)
	}
	return kubectl{path: path, cacheDir: t.TempDir()}
}

func (k kubectl) run(t *testing.T, kubeconfig string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), k.path, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	// Keep the discovery cache per test, out of the user's ~/.kube.
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+k.cacheDir)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

func (k kubectl) ok(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	stdout, stderr, err := k.run(t, kubeconfig, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return stdout
}

func (k kubectl) fails(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	stdout, stderr, err := k.run(t, kubeconfig, args...)
	if err == nil {
		t.Fatalf("kubectl %s succeeded, want an error:\n%s", strings.Join(args, " "), stdout)
	}
	return stderr
}
