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
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher/rootfs"
)

// agentBundle unpacks the agent's image for one test.
func agentBundle(t *testing.T, e *env) *rootfs.Bundle {
	t.Helper()
	b, err := rootfs.Unpack(t.Context(), filepath.Join(e.imagesDir, "vessel-agent"), e.version, filepath.Join(t.TempDir(), "bundle"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runInImage runs a program of the image (not its entrypoint) chrooted
// into it, with work mounted at /work, and returns its combined output.
func runInImage(t *testing.T, b *rootfs.Bundle, work string, argv ...string) string {
	t.Helper()
	img := *b
	img.Process.Args = argv
	cmd, err := img.Command(t.Context(), rootfs.Options{Mounts: []rootfs.Mount{{Source: work, Target: "/work"}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in the agent's image: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func TestAgentImage(t *testing.T) {
	e := requireEnv(t)
	b := agentBundle(t, e)
	if uid, _ := b.Owner(); uid != 0 {
		t.Errorf("the agent's image runs as %d; it must be root to use the host's libvirtd socket", uid)
	}

	// What the agent executes itself (node-agent/disks, node-agent/hypervisor).
	t.Run("qemu-img makes and reads a qcow2 disk", func(t *testing.T) {
		work := t.TempDir()
		runInImage(t, b, work, "qemu-img", "create", "-q", "-f", "qcow2", "/work/disk.qcow2", "64M")
		out := runInImage(t, b, work, "prlimit", "--cpu=10", "--as=1073741824", "--", "qemu-img", "info", "-f", "qcow2", "--output=json", "/work/disk.qcow2")
		var info struct {
			Format      string `json:"format"`
			VirtualSize int64  `json:"virtual-size"`
		}
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("qemu-img info: %v\n%s", err, out)
		}
		if info.Format != "qcow2" || info.VirtualSize != 64<<20 {
			t.Errorf("qemu-img info = %+v, want a 64 MiB qcow2", info)
		}
	})

	t.Run("genisoimage makes a NoCloud seed ISO labelled cidata", func(t *testing.T) {
		work := t.TempDir()
		writeFiles(t, work, map[string][]byte{"user-data": []byte("#cloud-config\n"), "meta-data": []byte("instance-id: i-1\n")})
		runInImage(t, b, work, "genisoimage", "-quiet", "-output", "/work/seed.iso", "-volid", "cidata", "-joliet", "-rock", "/work/user-data", "/work/meta-data")
		iso, err := os.ReadFile(filepath.Join(work, "seed.iso"))
		if err != nil {
			t.Fatal(err)
		}
		// The primary volume descriptor is at 32 KiB; its volume
		// identifier at byte 40, 32 bytes padded with spaces.
		if len(iso) < 0x8000+72 || strings.TrimRight(string(iso[0x8000+40:0x8000+72]), " ") != "cidata" {
			t.Errorf("seed.iso has no volume cidata")
		}
	})

	t.Run("the KVM probe's QEMU runs", func(t *testing.T) {
		out := runInImage(t, b, t.TempDir(), "qemu-system-x86_64", "--version")
		if !strings.Contains(out, "QEMU emulator version") {
			t.Errorf("qemu-system-x86_64 --version:\n%s", out)
		}
	})
}

func (e *env) vesselClient(t *testing.T) versioned.Interface {
	t.Helper()
	cfg, err := e.cluster.AdminConfig()
	if err != nil {
		t.Fatal(err)
	}
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}
