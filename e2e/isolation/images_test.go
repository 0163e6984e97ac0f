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
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
)

// The attacks of the issue on host files through images and host paths,
// each as alice through kube-apiserver, refused before any domain exists.

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

// A few KiB of qcow2 claiming a disk of 64Ti, which the guest would fill on
// the host's disk: the agent refuses more than --disk-max-virtual-size
// (256Gi by default), as image and as hostPath disk.
func TestQCOW2VirtualSizeIsBounded(t *testing.T) {
	e := env(t)
	huge := filepath.Join(t.TempDir(), "huge.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", huge, "64T")
	content, err := os.ReadFile(huge)
	if err != nil {
		t.Fatal(err)
	}
	url, sum := publish(t, "huge.qcow2", content)
	const message = "the qcow2 image makes a disk of 64Ti, more than the 256Gi this hypervisor allows (--disk-max-virtual-size)"
	t.Run("image", func(t *testing.T) {
		createAsAlice(t, e, "huge-image", fmt.Sprintf("  - name: root\n    image: {url: %q, sha256: %s, format: qcow2}\n", url, sum))
		expectRefused(t, e, "huge-image", "ImageTooLarge", message)
	})
	t.Run("hostPath", func(t *testing.T) {
		disk := filepath.Join(suite.writableRoot, ns, "huge.qcow2")
		if err := os.WriteFile(disk, content, 0o644); err != nil {
			t.Fatal(err)
		}
		createAsAlice(t, e, "huge-hostpath", fmt.Sprintf("  - name: root\n    hostPath: {path: %s, format: qcow2}\n", disk))
		expectRefused(t, e, "huge-hostpath", "ImageTooLarge", message)
	})
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
	dir := framework.VMDir(e.HypervisorOf(t, vm), vm)
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "disk-root.qcow2"): 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
		} else if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), want)
		}
	}
}
