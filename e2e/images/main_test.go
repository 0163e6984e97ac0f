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

package images

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vessel-vm/vessel/launcher"
)

// env is what the whole package shares: the images and release built
// once, and one control plane to install into.
type env struct {
	root       string
	imagesDir  string // _output/images
	releaseDir string // _output/release
	version    string
	cluster    *launcher.Cluster
	// kubeDir is kubectl's cache directory (KUBECACHEDIR).
	kubeDir string
}

var (
	shared *env
	// skipReason is set when the machine lacks what the suite needs and
	// VESSEL_E2E is unset: every test then skips with it.
	skipReason string
	// apiserver is the vessel-apiserver run from its image, started by the
	// first test that needs it and stopped after all.
	apiserver *imageAPIServer
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := launcher.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if missing := missingPrerequisites(root); missing != nil {
		if os.Getenv("VESSEL_E2E") == "" {
			skipReason = fmt.Sprintf("cannot build and run the images here (%v); run as root after `make deps`, or set VESSEL_E2E=1 to fail instead", missing)
			return m.Run()
		}
		fmt.Fprintf(os.Stderr, "VESSEL_E2E is set but the images cannot be tested: %v\n", missing)
		return 1
	}
	if testing.Short() {
		skipReason = "builds images and starts a control plane; skipped in -short mode"
		return m.Run()
	}

	e := &env{root: root, imagesDir: filepath.Join(root, "_output", "images"), releaseDir: filepath.Join(root, "_output", "release")}
	// What a user runs: make images, make release (the scripts behind
	// them, so that the suite does not depend on make).
	for _, script := range []string{"hack/build-images.sh", "hack/release.sh"} {
		begin := time.Now()
		out, err := e.script(context.Background(), nil, script)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n%s\n", script, err, out)
			return 1
		}
		fmt.Fprintf(os.Stderr, "%s took %v\n", script, time.Since(begin).Round(time.Second))
	}
	if e.version, err = e.builtVersion(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	stateDir, err := os.MkdirTemp("", "vessel-e2e-images-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if e.kubeDir, err = os.MkdirTemp("", "vessel-e2e-images-kubecache-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(e.kubeDir)
	logf := func(string, ...any) {}
	if testing.Verbose() {
		logf = log.Printf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	begin := time.Now()
	e.cluster, err = launcher.Start(ctx, launcher.Options{
		StateDir: stateDir,
		NoAgent:  true,
		// The image's own binary, also as the launcher's vessel-apiserver:
		// the suite needs nothing `make build` makes.
		VesselAPIServerBinary: filepath.Join(e.imagesDir, "bin", "vessel-apiserver"),
		// As on kubeadm clusters: the agent's DaemonSet is privileged.
		KubeAPIServerArgs: []string{"--allow-privileged=true"},
		Logf:              logf,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start the control plane (state and logs kept in %s): %v\n", stateDir, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "control plane ready in %v\n", time.Since(begin).Round(time.Second))
	shared = e
	code := m.Run()
	if apiserver != nil {
		apiserver.stop()
	}
	e.cluster.Stop()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "control plane state and logs kept in %s\n", stateDir)
	} else {
		os.RemoveAll(stateDir)
	}
	return code
}

// missingPrerequisites reports what the suite needs and this machine lacks.
func missingPrerequisites(root string) error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("not root (mmdebstrap, chroot and mount namespaces need it)"))
	}
	for _, tool := range []string{"apt-get", "dpkg-deb", "unshare", "chroot", "kubectl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			errs = append(errs, err)
		}
	}
	bin := filepath.Join(root, "_output", "bin")
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// requireEnv returns the suite's environment, or skips t.
func requireEnv(t *testing.T) *env {
	t.Helper()
	// Read inside a test too, where `go test` records it for its cache.
	_ = os.Getenv("VESSEL_E2E")
	if skipReason != "" {
		t.Skip(skipReason)
	}
	return shared
}

// script runs a hack/ script from the repository root with extra
// environment and returns its combined output.
func (e *env) script(ctx context.Context, extraEnv []string, script string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(e.root, script), args...)
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), extraEnv...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// builtVersion is the tag of the images just built.
func (e *env) builtVersion() (string, error) {
	ref, err := os.ReadFile(filepath.Join(e.imagesDir, "vessel-apiserver.ref"))
	if err != nil {
		return "", err
	}
	nameTag, _, ok := strings.Cut(strings.TrimSpace(string(ref)), "@")
	i := strings.LastIndexByte(nameTag, ':')
	if !ok || i < 0 {
		return "", fmt.Errorf("unexpected image reference %q", ref)
	}
	return nameTag[i+1:], nil
}

// kubectl runs the real kubectl as the admin and returns its combined
// output.
func (e *env) kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append(args, "--kubeconfig", e.cluster.Kubeconfig(launcher.AdminKubeconfig))...)
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+e.kubeDir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kubectlOutput runs kubectl as the admin and returns its standard output
// alone (warnings go to standard error), failing t on an error.
func (e *env) kubectlOutput(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append(args, "--kubeconfig", e.cluster.Kubeconfig(launcher.AdminKubeconfig))...)
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+e.kubeDir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func (e *env) mustKubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.kubectl(t, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
