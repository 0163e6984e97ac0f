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
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestOverlayAndBlank(t *testing.T) {
	requireTool(t, "qemu-img")
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.img")
	writeFile(t, base, make([]byte, 1<<20), 0o400)
	overlay := filepath.Join(dir, "disk.qcow2")
	if err := Overlay(ctx, base, Raw, overlay); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("qemu-img", "info", "--output=json", overlay).Output()
	if err != nil || !strings.Contains(string(out), `"backing-filename": "`+base+`"`) || !strings.Contains(string(out), `"backing-filename-format": "raw"`) {
		t.Fatalf("overlay info: %s %v", out, err)
	}
	if m := mode(t, overlay); m != 0o600 {
		t.Errorf("overlay mode %v, want 0600", m)
	}
	// Idempotent: an existing overlay (the guest's data) is kept.
	st1, _ := os.Stat(overlay)
	if err := Overlay(ctx, base, Raw, overlay); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(overlay)
	if !os.SameFile(st1, st2) {
		t.Errorf("overlay was recreated")
	}
	// The same file declared in another format, or another image: the
	// guest's writes do not belong on it.
	other := filepath.Join(dir, "other.img")
	writeFile(t, other, make([]byte, 1<<20), 0o400)
	for name, try := range map[string]func() error{
		"other format": func() error { return Overlay(ctx, base, QCOW2, overlay) },
		"other image":  func() error { return Overlay(ctx, other, Raw, overlay) },
	} {
		if err := try(); !errors.Is(err, ErrOverlayMismatch) {
			t.Errorf("%s: %v, want ErrOverlayMismatch", name, err)
		}
	}
	if err := Overlay(ctx, base, "", filepath.Join(dir, "x.qcow2")); err == nil {
		t.Errorf("an overlay without a declared backing format was made")
	}
	// An overlay made with a wider mode (by an older agent) is narrowed.
	if err := os.Chmod(overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Overlay(ctx, base, Raw, overlay); err != nil || mode(t, overlay) != 0o600 {
		t.Errorf("existing overlay: %v, mode %v", err, mode(t, overlay))
	}

	blank := filepath.Join(dir, "blank.qcow2")
	if err := Blank(ctx, blank, 64<<20); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command("qemu-img", "info", "--output=json", blank).Output()
	if !strings.Contains(string(out), `"virtual-size": 67108864`) {
		t.Errorf("blank disk info: %s", out)
	}
	if m := mode(t, blank); m != 0o600 {
		t.Errorf("blank disk mode %v, want 0600", m)
	}
	if err := Blank(ctx, filepath.Join(dir, "zero.qcow2"), 0); err == nil {
		t.Errorf("zero-size blank disk accepted")
	}
	// Overlays name their backing file; the collector reads it.
	got, err := backingFilesUnder(filepath.Dir(dir))
	if err != nil || !got[base] || len(got) != 1 {
		t.Errorf("backingFilesUnder = %v, %v; want just %s", got, err, base)
	}
}

func TestPrivateDir(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "vms", "uid-1")
	if err := PrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("new VM directory mode %v, want 0700", m)
	}
	// One an older agent made readable by everyone is narrowed.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := PrivateDir(dir); err != nil || mode(t, dir) != 0o700 {
		t.Errorf("existing VM directory: %v, mode %v", err, mode(t, dir))
	}
}
