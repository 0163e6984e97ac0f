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
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
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
	noDomain(t, vm)
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

var (
	lvOnce sync.Once
	lv     *hypervisor.Libvirt
	lvErr  error
)

// noDomain fails t if libvirt has a domain with the VM's UID.
func noDomain(t *testing.T, vm *v1alpha1.VirtualMachine) {
	t.Helper()
	lvOnce.Do(func() {
		lv = hypervisor.NewLibvirt("")
		go lv.Run(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		lvErr = lv.WaitConnected(ctx)
	})
	if lvErr != nil {
		t.Fatalf("connect to libvirtd: %v", lvErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := lv.Lookup(ctx, string(vm.UID))
	if !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("VM %s: libvirt lookup of domain %s = %+v, %v; want no domain", vm.Name, vm.UID, d, err)
	}
}

// The attack: a qcow2 image whose backing file is a host file. QEMU
// runs as root and would serve that file to the guest as its disk.
func TestImageWithBackingFileIsRefused(t *testing.T) {
	e := env(t)
	untouched(t, hostFiles()...)
	evil := filepath.Join(t.TempDir(), "evil.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", suite.secret, "-F", "raw", evil, "1M")
	content, err := os.ReadFile(evil)
	if err != nil {
		t.Fatal(err)
	}
	url, sum := publish(t, "evil.qcow2", content)

	t.Run("declared qcow2", func(t *testing.T) {
		createAsAlice(t, e, "evil-qcow2", fmt.Sprintf("  - name: root\n    image: {url: %q, sha256: %s, format: qcow2}\n", url, sum))
		expectRefused(t, e, "evil-qcow2", "ImageHasBackingFile", "names a backing file")
	})
	t.Run("format left to the default (raw)", func(t *testing.T) {
		createAsAlice(t, e, "evil-raw", fmt.Sprintf("  - name: root\n    image: {url: %q, sha256: %s}\n", url, sum))
		expectRefused(t, e, "evil-raw", "ImageFormatMismatch", "declared raw, but it is a qcow2 image: set format: qcow2")
	})
	t.Run("external data file", func(t *testing.T) {
		// qemu-img create writes the data file it names, so the header
		// names a host file of its own, then checked untouched.
		victim := filepath.Join(suite.dir, "victim-data.raw")
		dataFile := filepath.Join(t.TempDir(), "datafile.qcow2")
		qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+victim, dataFile, "1M")
		untouched(t, victim)
		content, err := os.ReadFile(dataFile)
		if err != nil {
			t.Fatal(err)
		}
		url, sum := publish(t, "datafile.qcow2", content)
		createAsAlice(t, e, "evil-datafile", fmt.Sprintf("  - name: root\n    image: {url: %q, sha256: %s, format: qcow2}\n", url, sum))
		expectRefused(t, e, "evil-datafile", "ImageHasDataFile", "external file")
	})
}

// The same through a VMDK descriptor whose extent is a host file.
func TestVMDKDescriptorIsRefused(t *testing.T) {
	e := env(t)
	untouched(t, hostFiles()...)
	descriptor := fmt.Sprintf("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\nRW 2048 FLAT %q 0\n", suite.secret)
	url, sum := publish(t, "evil.vmdk", []byte(descriptor))

	createAsAlice(t, e, "evil-vmdk", fmt.Sprintf("  - name: root\n    image: {url: %q, sha256: %s}\n", url, sum))
	expectRefused(t, e, "evil-vmdk", "ImageFormatMismatch", "declared raw, but it is a vmdk image")
	createAsAlice(t, e, "evil-vmdk-qcow2", fmt.Sprintf("  - name: root\n    image: {url: %q, sha256: %s, format: qcow2}\n", url, sum))
	expectRefused(t, e, "evil-vmdk-qcow2", "ImageFormatMismatch", "declared qcow2, but it is a vmdk image")
}

// Image URLs cannot reach the host's loopback services or the metadata
// service, not even through a redirect from an allowed server.
func TestImageURLsCannotReachInternalAddresses(t *testing.T) {
	e := env(t)
	sum := sha([]byte("internal answer"))
	for _, tc := range []struct{ name, url, message string }{
		{"loopback", suite.internalURL + "/disk.img", "127.0.0.1 is a loopback address"},
		{"redirect-to-loopback", suite.imageURL + "/redirect-internal", "127.0.0.1 is a loopback address"},
		{"metadata-service", "http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := suite.internalHits.Load()
			name := "url-" + tc.name
			createAsAlice(t, e, name, fmt.Sprintf("  - name: root\n    image: {url: %q, sha256: %s}\n", tc.url, sum))
			out := expectRefused(t, e, name, "ImageURLNotAllowed", tc.message)
			if strings.Contains(out, "internal answer") {
				t.Errorf("the internal service's answer reached alice:\n%s", out)
			}
			if n := suite.internalHits.Load() - before; n != 0 {
				t.Errorf("the internal service got %d requests", n)
			}
		})
	}
}

// A checksum mismatch says what was expected, never the hash (or content)
// of what the URL returned: that would be an oracle on whatever it reached.
func TestChecksumMismatchTellsNoHash(t *testing.T) {
	e := env(t)
	content := []byte("served content " + rand.String(12))
	url, servedSum := publish(t, "other.img", content)
	want := sha([]byte("what alice expected"))
	createAsAlice(t, e, "badsum", fmt.Sprintf("  - name: root\n    image: {url: %q, sha256: %s}\n", url, want))
	out := expectRefused(t, e, "badsum", "ImageChecksumMismatch", want)
	if strings.Contains(out, servedSum) || strings.Contains(out, string(content)) {
		t.Errorf("kubectl describe tells what was fetched:\n%s", out)
	}
}

// Shared roots are read-only to tenants: alice cannot make the guest kernel
// every quick-start VM boots a writable disk of hers.
func TestWritableDiskUnderSharedRootIsRefused(t *testing.T) {
	e := env(t)
	untouched(t, hostFiles()...)
	kernel := filepath.Join(framework.GuestDir, "vmlinuz")
	out, err := applyAsAlice(t, e, vmYAML("overwrite-kernel", fmt.Sprintf("  - name: root\n    hostPath: {path: %s}\n", kernel)))
	if err == nil {
		_, _ = e.Kubectl(t, "admin", "-n", ns, "delete", "vm", "overwrite-kernel", "--wait=false")
		t.Fatalf("alice made the shared guest kernel a writable disk:\n%s", out)
	}
	t.Logf("alice's kubectl apply:\n%s", out)
	for _, want := range []string{"spec.disks[0].readOnly", "shared host path root", "which VMs may only read"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl apply's refusal lacks %q:\n%s", want, out)
		}
	}
	if out, err := e.Kubectl(t, "alice", "-n", ns, "get", "vm", "overwrite-kernel"); err == nil {
		t.Errorf("the refused VM exists:\n%s", out)
	}
	// Another namespace's directory of the writable root is out of reach too.
	other := filepath.Join(suite.writableRoot, "team-b", "data.img")
	out, err = applyAsAlice(t, e, vmYAML("other-namespace", fmt.Sprintf("  - name: root\n    hostPath: {path: %s}\n", other)))
	if err == nil || !strings.Contains(out, "spec.disks[0].hostPath.path") {
		t.Errorf("alice used team-b's directory: %v\n%s", err, out)
	}
}

// A guest can write anything into its raw disk, including a qcow2 header
// naming a host file as backing file. The disk is declared raw, so QEMU
// keeps reading it as raw: the guest sees the header bytes, never the file.
func TestRawHostPathDiskIsNeverReadAsQCOW2(t *testing.T) {
	e := env(t)
	disk := filepath.Join(suite.writableRoot, ns, "rewritten.img")
	// What the guest would have written into its disk before a restart.
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", suite.secret, "-F", "raw", disk, "1M")
	untouched(t, hostFiles()...)

	createAsAlice(t, e, "rewritten", fmt.Sprintf(`  - name: root
    hostPath: {path: %s}
  - name: seed
    cloudInit:
      userData: |
        #!/bin/sh
        echo "VESSEL-VDA-HEX $(head -c 4 /dev/vda | od -A n -t x1 | xargs)"
        echo "VESSEL-VDA-TEXT $(head -c 4096 /dev/vda | tr -c 'A-Za-z0-9-' '.' | tr -s '.')"
`, disk))
	vm := e.WaitPhase(t, ns, "rewritten", v1alpha1.VirtualMachineRunning)
	e.WaitLog(t, vm, "VESSEL-VDA-TEXT")
	log := e.ConsoleLog(vm)
	if !strings.Contains(log, "VESSEL-VDA-HEX 51 46 49 fb") {
		t.Errorf("the guest does not see its disk's own first bytes (the qcow2 magic QFI\\xfb):\n%s", log)
	}
	if strings.Contains(log, suite.secretContent) {
		t.Fatalf("the guest read the host's secret through its raw disk:\n%s", log)
	}
	out := e.MustKubectl(t, "alice", "-n", ns, "get", "vm", "rewritten", "-o", "jsonpath={.spec.disks[0].hostPath.format}")
	if out != "raw" {
		t.Errorf("stored format %q, want the default raw", out)
	}
}

// The control: an honest, self-contained qcow2 image from the allow-listed
// server boots, through an overlay whose backing chain the domain declares.
func TestSelfContainedQCOW2ImageBoots(t *testing.T) {
	e := env(t)
	image := filepath.Join(t.TempDir(), "disk.qcow2")
	qemuImg(t, "convert", "-f", "raw", "-O", "qcow2", filepath.Join(framework.GuestDir, "disk.img"), image)
	content, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	url, sum := publish(t, "disk.qcow2", content)
	createAsAlice(t, e, "honest", fmt.Sprintf("  - name: root\n    image: {url: %q, sha256: %s, format: qcow2}\n", url, sum))
	vm := e.WaitPhase(t, ns, "honest", v1alpha1.VirtualMachineRunning)
	e.WaitLog(t, vm, "VESSEL-DISK mounted")

	// Its files are root's alone.
	dir := filepath.Join(e.StateDir, "agent", "vms", string(vm.UID))
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "disk-root.qcow2"): 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
		} else if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), want)
		}
	}
}
