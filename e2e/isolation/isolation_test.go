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
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
)

const (
	ns           = "team-a" // alice has edit here
	imageAddress = "127.0.0.2"
)

// suite is what TestMain prepares before the control plane starts: the
// flags name it.
var suite struct {
	dir          string // everything the suite made on the host
	writableRoot string // --writable-host-path-roots; alice's files under team-a/
	imagesDir    string // served by the image server
	imageURL     string // http://127.0.0.2:<port>
	internalURL  string // http://127.0.0.1:<port>, an "internal service"
	internalHits atomic.Int32
	// secret is a host file outside every root; its content must never
	// reach a guest or a status.
	secret, secretContent string
	setupErr              error
}

func TestMain(m *testing.M) {
	stop := setup()
	framework.Main(m, stop)
}

func setup() func() {
	var err error
	if suite.dir, err = os.MkdirTemp("", "vessel-e2e-isolation-"); err != nil {
		suite.setupErr = err
		return func() {}
	}
	suite.writableRoot = filepath.Join(suite.dir, "vm")
	suite.imagesDir = filepath.Join(suite.dir, "served")
	for _, d := range []string{filepath.Join(suite.writableRoot, ns), suite.imagesDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			suite.setupErr = err
		}
	}
	suite.secret = filepath.Join(suite.dir, "host-secret.txt")
	suite.secretContent = "VESSEL-HOST-SECRET-" + rand.String(12)
	if err := os.WriteFile(suite.secret, []byte(suite.secretContent+"\n"), 0o600); err != nil {
		suite.setupErr = err
	}

	internal, err := serve("127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		suite.internalHits.Add(1)
		_, _ = w.Write([]byte("internal answer"))
	}))
	if err != nil {
		suite.setupErr = err
		return func() { os.RemoveAll(suite.dir) }
	}
	suite.internalURL = "http://" + internal.Addr
	mux := http.NewServeMux()
	mux.Handle("/images/", http.StripPrefix("/images/", http.FileServer(http.Dir(suite.imagesDir))))
	mux.HandleFunc("/redirect-internal", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, suite.internalURL+"/disk.img", http.StatusFound)
	})
	images, err := serve(imageAddress, mux)
	if err != nil {
		suite.setupErr = err
		return func() { internal.Close(); os.RemoveAll(suite.dir) }
	}
	suite.imageURL = "http://" + images.Addr
	return func() {
		images.Close()
		internal.Close()
		os.RemoveAll(suite.dir)
	}
}

func serve(addr string, h http.Handler) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Addr: ln.Addr().String(), Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

func env(t *testing.T) *framework.Env {
	t.Helper()
	if suite.setupErr != nil {
		t.Fatalf("suite setup: %v", suite.setupErr)
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("qemu-img: %v", err)
	}
	writable := "--writable-host-path-roots=" + suite.writableRoot
	return framework.RequireWith(t, framework.Config{
		VesselAPIServerArgs: []string{writable},
		AgentArgs:           []string{writable, "--image-allowed-cidrs=" + imageAddress + "/32"},
	})
}

// hostFiles are the host files no tenant may change: the secret, and the
// shared root's guest kernel and initrd every quick-start VM boots.
func hostFiles() []string {
	return []string{suite.secret, filepath.Join(framework.GuestDir, "vmlinuz"), filepath.Join(framework.GuestDir, "initrd.img")}
}

type fileState struct {
	sum   string
	mtime time.Time
	mode  os.FileMode
}

func snapshotFiles(t *testing.T, paths []string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = fileState{sha(b), st.ModTime(), st.Mode()}
	}
	return out
}

// untouched fails t at its end if any of paths changed meanwhile.
func untouched(t *testing.T, paths ...string) {
	t.Helper()
	before := snapshotFiles(t, paths)
	t.Cleanup(func() {
		after := snapshotFiles(t, paths)
		for p, b := range before {
			if after[p] != b {
				t.Errorf("host file %s changed: %+v -> %+v", p, b, after[p])
			}
		}
	})
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// publish puts content on the image server and returns its URL and sha256.
func publish(t *testing.T, name string, content []byte) (url, sum string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(suite.imagesDir, name), content, 0o644); err != nil {
		t.Fatal(err)
	}
	return suite.imageURL + "/images/" + name, sha(content)
}

// vmYAML is a VM booting the test guest (kernel and initrd from the shared
// root, which a VM may read) with the given disks, as alice would write it.
func vmYAML(name, disks string) string {
	return fmt.Sprintf(`apiVersion: vessel.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: %s
  namespace: %s
spec:
  runStrategy: Always
  memory: 128Mi
  terminationGracePeriodSeconds: 5
  kernel:
    kernel: {hostPath: {path: %s}}
    initrd: {hostPath: {path: %s}}
    cmdline: console=ttyS0 quiet
  disks:
%s`, name, ns, filepath.Join(framework.GuestDir, "vmlinuz"), filepath.Join(framework.GuestDir, "initrd.img"), disks)
}

// applyAsAlice runs kubectl apply as alice and returns its output.
func applyAsAlice(t *testing.T, e *framework.Env, manifest string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vm.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return e.Kubectl(t, "alice", "apply", "-f", path)
}

// createAsAlice applies a VM as alice and deletes it when t ends.
func createAsAlice(t *testing.T, e *framework.Env, name, disks string) {
	t.Helper()
	if out, err := applyAsAlice(t, e, vmYAML(name, disks)); err != nil {
		t.Fatalf("alice's kubectl apply: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = e.Kubectl(t, "admin", "-n", ns, "delete", "vm", name, "--wait=false") })
}

// expectRefused waits until the VM failed provisioning with reason, checks
// alice reads the reason and message in `kubectl describe vm` and that no
// domain was ever defined for it, and returns the describe output.
func expectRefused(t *testing.T, e *framework.Env, name, reason, message string) string {
	t.Helper()
	vm := e.WaitVM(t, ns, name, 3*time.Minute, "Failed with "+reason, func(vm *v1alpha1.VirtualMachine) bool {
		c := provisioned(vm)
		return vm.Status.Phase == v1alpha1.VirtualMachineFailed && c != nil && c.Reason == reason
	})
	out := e.MustKubectl(t, "alice", "-n", ns, "describe", "vm", name)
	t.Logf("alice's kubectl describe vm %s:\n%s", name, out)
	for _, want := range []string{"Failed", reason, message} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl describe vm %s lacks %q:\n%s", name, want, out)
		}
	}
	if strings.Contains(out, suite.secretContent) || strings.Contains(out, suite.secret) {
		t.Errorf("kubectl describe vm %s names or quotes the host's secret:\n%s", name, out)
	}
	noDomain(t, e, vm)
	return out
}

func provisioned(vm *v1alpha1.VirtualMachine) *struct{ Reason, Message string } {
	for _, c := range vm.Status.Conditions {
		if c.Type == v1alpha1.VirtualMachineConditionProvisioned {
			return &struct{ Reason, Message string }{c.Reason, c.Message}
		}
	}
	return nil
}

// noDomain fails t if any hypervisor's libvirtd has a domain with the VM's
// UID.
func noDomain(t *testing.T, e *framework.Env, vm *v1alpha1.VirtualMachine) {
	t.Helper()
	if hvs := e.DomainsOf(t, vm); len(hvs) > 0 {
		t.Errorf("VM %s: a domain %s is defined on %v; want none", vm.Name, vm.UID, hvs)
	}
}
