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

package disks

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// vmdkDescriptor is a monolithicFlat VMDK whose extent is a host file: a
// guest attached to it would read that file.
func vmdkDescriptor(extent string) string {
	return `# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"

# Extent description
RW 2048 FLAT "` + extent + `" 0

# The Disk Data Base
ddb.virtualHWVersion = "4"
`
}

func TestInspectImage(t *testing.T) {
	requireTool(t, "qemu-img")
	requireTool(t, "prlimit")
	dir := t.TempDir()
	secret := filepath.Join(dir, "host-secret.txt")
	writeFile(t, secret, []byte("the host's secret"), 0o600)
	p := func(name string) string { return filepath.Join(dir, name) }

	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", p("backing.qcow2"), "1M")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", secret, "-F", "raw", p("backing-v2.qcow2"), "1M")
	// qemu-img create writes the data file it names: not the secret.
	qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+p("data.raw"), p("datafile.qcow2"), "1M")
	qemuImg(t, "create", "-q", "-f", "qcow2", "--object", "secret,id=sec0,data=123456",
		"-o", "encrypt.format=luks,encrypt.key-secret=sec0", p("encrypted.qcow2"), "1M")
	qemuImg(t, "create", "-q", "-f", "qcow2", p("clean.qcow2"), "1M")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", p("clean-v2.qcow2"), "1M")
	qemuImg(t, "create", "-q", "-f", "vmdk", p("sparse.vmdk"), "1M")
	qemuImg(t, "create", "-q", "-f", "vdi", p("disk.vdi"), "1M")
	qemuImg(t, "create", "-q", "-f", "vpc", p("disk.vhd"), "1M")
	qemuImg(t, "create", "-q", "-f", "qed", p("disk.qed"), "1M")
	writeFile(t, p("descriptor.vmdk"), []byte(vmdkDescriptor(secret)), 0o644)
	// QEMU's probe also takes a descriptor without its title line.
	writeFile(t, p("bare-descriptor.vmdk"), []byte("\n# comment\n   \nversion=1\nRW 2048 FLAT \""+secret+"\" 0\n"), 0o644)
	writeFile(t, p("zeros.raw"), make([]byte, 1<<20), 0o644)
	mbr := make([]byte, 1<<20)
	copy(mbr[446:], []byte{0x80, 0, 2, 0, 0x83})
	mbr[510], mbr[511] = 0x55, 0xaa
	writeFile(t, p("mbr.raw"), mbr, 0o644)
	writeFile(t, p("text.raw"), []byte("just some text\nversion=1 is not the first line\n"), 0o644)
	writeFile(t, p("empty.raw"), nil, 0o644)
	truncated, err := os.ReadFile(p("clean.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("truncated.qcow2"), truncated[:40], 0o644)

	tests := []struct {
		file    string
		format  Format
		wantErr error
		wantMsg string
	}{
		{"clean.qcow2", QCOW2, nil, ""},
		{"clean-v2.qcow2", QCOW2, nil, ""},
		{"zeros.raw", Raw, nil, ""},
		{"mbr.raw", Raw, nil, ""},
		{"text.raw", Raw, nil, ""},
		{"empty.raw", Raw, nil, ""},
		{"backing.qcow2", QCOW2, ErrBackingFile, "backing file"},
		{"backing-v2.qcow2", QCOW2, ErrBackingFile, "backing file"},
		{"datafile.qcow2", QCOW2, ErrDataFile, "external file"},
		{"encrypted.qcow2", QCOW2, ErrInvalidImage, "encrypted"},
		{"truncated.qcow2", QCOW2, ErrInvalidImage, "truncated"},
		{"backing.qcow2", Raw, ErrFormatMismatch, "declared raw, but it is a qcow2 image: set format: qcow2"},
		{"clean.qcow2", Raw, ErrFormatMismatch, "declared raw, but it is a qcow2 image: set format: qcow2"},
		{"descriptor.vmdk", Raw, ErrFormatMismatch, "declared raw, but it is a vmdk image"},
		{"bare-descriptor.vmdk", Raw, ErrFormatMismatch, "declared raw, but it is a vmdk image"},
		{"descriptor.vmdk", QCOW2, ErrFormatMismatch, "declared qcow2, but it is a vmdk image"},
		{"sparse.vmdk", Raw, ErrFormatMismatch, "vmdk image"},
		{"disk.vdi", Raw, ErrFormatMismatch, "vdi image"},
		{"disk.vhd", Raw, ErrFormatMismatch, "vpc (vhd) image"},
		{"disk.qed", Raw, ErrFormatMismatch, "qed image"},
		{"disk.qed", QCOW2, ErrFormatMismatch, "declared qcow2, but it is a qed image"},
		{"zeros.raw", QCOW2, ErrFormatMismatch, "declared qcow2, but it is a raw image: set format: raw"},
		{"empty.raw", QCOW2, ErrFormatMismatch, "declared qcow2, but it is a raw image"},
		{"clean.qcow2", "vmdk", nil, "unknown format"},
	}
	for _, tt := range tests {
		t.Run(tt.file+" as "+string(tt.format), func(t *testing.T) {
			err := InspectImage(context.Background(), p(tt.file), tt.format, 0)
			if tt.wantErr == nil && tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("InspectImage = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("InspectImage accepted it")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q lacks %q", err, tt.wantMsg)
			}
			// The error never quotes the file: not the name of the host
			// file it points at, not its content.
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "host's secret") {
				t.Errorf("error quotes the image's reference: %q", err)
			}
		})
	}
	if reason, permanent := Reason(InspectImage(context.Background(), p("backing.qcow2"), QCOW2, 0)); reason != "ImageHasBackingFile" || !permanent {
		t.Errorf("reason %q, %v", reason, permanent)
	}
}

// TestRunLimited: a tool run on an untrusted file is stopped when it spins,
// allocates without bound or hangs.
func TestRunLimited(t *testing.T) {
	requireTool(t, "prlimit")
	oldCPU, oldMem, oldTimeout := inspectCPUSeconds, inspectMaxMemory, inspectTimeout
	t.Cleanup(func() { inspectCPUSeconds, inspectMaxMemory, inspectTimeout = oldCPU, oldMem, oldTimeout })
	// The wall-clock limit is far away here, so the first two must be
	// stopped by the CPU and memory limits (on a busy machine one CPU
	// second may take several seconds to burn).
	inspectCPUSeconds, inspectMaxMemory, inspectTimeout = 1, 64<<20, time.Minute
	ctx := context.Background()

	if out, err := runLimited(ctx, "sh", "-c", "echo ok"); err != nil || string(out) != "ok\n" {
		t.Fatalf("a well-behaved tool: %q, %v", out, err)
	}
	if _, err := runLimited(ctx, "sh", "-c", "while :; do :; done"); err == nil || strings.Contains(err.Error(), "took longer") {
		t.Errorf("a spinning tool was not stopped by the CPU limit: %v", err)
	}
	// A shell variable doubling until it outgrows 64 MiB of address space,
	// long before it could use a minute of CPU.
	inspectCPUSeconds = 60
	if _, err := runLimited(ctx, "sh", "-c", `x=aaaaaaaa; while :; do x=$x$x; done`); err == nil || strings.Contains(err.Error(), "took longer") {
		t.Errorf("a tool over the memory limit was not stopped by it: %v", err)
	}
	inspectTimeout = 2 * time.Second
	start := time.Now()
	_, err := runLimited(ctx, "sleep", "30")
	if err == nil || !strings.Contains(err.Error(), "took longer") {
		t.Errorf("a hanging tool: %v", err)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("a hanging tool was stopped after %v", d)
	}
}

// FuzzReadQCOW2Header: no header, however crafted, panics the parser or
// makes it read far.
func FuzzReadQCOW2Header(f *testing.F) {
	hdr := make([]byte, 512)
	copy(hdr, "QFI\xfb\x00\x00\x00\x03")
	hdr[23] = 16 // 64 KiB clusters
	hdr[103] = 104
	f.Add(hdr)
	f.Add([]byte("QFI\xfb\x00\x00\x00\x02"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = readQCOW2Header(bytes.NewReader(b))
		_, _ = detectFormat(bytes.NewReader(b))
	})
}

// A few KiB of qcow2 can claim a disk of many TiB, which its guest would
// then fill on the host: the virtual size is bounded.
func TestInspectImageBoundsVirtualSize(t *testing.T) {
	requireTool(t, "qemu-img")
	requireTool(t, "prlimit")
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", huge, "64T")
	st, err := os.Stat(huge)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a %d-byte file claims a 64Ti disk", st.Size())

	err = InspectImage(context.Background(), huge, QCOW2, 256<<30)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("InspectImage = %v, want ErrTooLarge", err)
	}
	if want := "makes a disk of 64Ti, more than the 256Gi this hypervisor allows (--disk-max-virtual-size)"; !strings.Contains(err.Error(), want) {
		t.Errorf("message %q lacks %q", err, want)
	}
	if reason, permanent := Reason(err); reason != "ImageTooLarge" || !permanent {
		t.Errorf("Reason = %q, %v; want ImageTooLarge, permanent", reason, permanent)
	}
	if err := InspectImage(context.Background(), huge, QCOW2, 64<<40); err != nil {
		t.Errorf("a disk of exactly the limit: %v", err)
	}
	roots := HostPaths{Writable: []string{dir}, MaxVirtualSize: 1 << 30}
	if err := os.MkdirAll(filepath.Join(dir, "team-a"), 0o755); err != nil {
		t.Fatal(err)
	}
	inNS := filepath.Join(dir, "team-a", "huge.qcow2")
	if err := os.Rename(huge, inNS); err != nil {
		t.Fatal(err)
	}
	if _, err := roots.Disk(context.Background(), inNS, "team-a", QCOW2, true); !errors.Is(err, ErrTooLarge) {
		t.Errorf("hostPath qcow2 disk: %v, want ErrTooLarge", err)
	}
}

func TestFormatBytes(t *testing.T) {
	for in, want := range map[uint64]string{0: "0 bytes", 1000: "1000 bytes", 1024: "1Ki", 256 << 30: "256Gi", 3 << 60: "3Ei", 1536: "1536 bytes"} {
		if got := formatBytes(in); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", in, got, want)
		}
	}
}
