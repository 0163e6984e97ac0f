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
	"path/filepath"
	"strings"
	"testing"
)

func TestHostPathsConfine(t *testing.T) {
	base := t.TempDir()
	shared := filepath.Join(base, "images")
	writable := filepath.Join(base, "vm")
	outside := filepath.Join(base, "secret")
	for _, d := range []string{shared, filepath.Join(shared, "sub"), outside, filepath.Join(writable, "team-a"), filepath.Join(writable, "team-b"), filepath.Join(base, "images-evil")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{
		filepath.Join(shared, "vmlinuz"), filepath.Join(shared, "sub", "disk.qcow2"), filepath.Join(outside, "shadow"),
		filepath.Join(base, "images-evil", "disk.img"), filepath.Join(writable, "team-a", "data.img"), filepath.Join(writable, "team-b", "data.img"),
	} {
		writeFile(t, f, []byte("x"), 0o644)
	}
	link := func(target, at string) {
		if err := os.Symlink(target, at); err != nil {
			t.Fatal(err)
		}
	}
	link(filepath.Join(outside, "shadow"), filepath.Join(shared, "escape"))                        // file symlink out
	link(outside, filepath.Join(shared, "escape-dir"))                                             // directory symlink out
	link("sub/disk.qcow2", filepath.Join(shared, "inside"))                                        // relative, stays in
	link(filepath.Join(shared, "sub"), filepath.Join(shared, "subdir"))                            // directory, stays in
	link(filepath.Join(base, "images-evil", "x"), filepath.Join(shared, "dangling"))               // target missing
	link(filepath.Join(writable, "team-b", "data.img"), filepath.Join(writable, "team-a", "peek")) // into another namespace
	link(filepath.Join(shared, "vmlinuz"), filepath.Join(writable, "team-a", "kernel"))            // into the shared root
	link(filepath.Join(writable, "team-b"), filepath.Join(writable, "team-c"))                     // a namespace directory that is a symlink
	rootLink := filepath.Join(base, "images-link")
	link(shared, rootLink)

	roots := HostPaths{Shared: []string{shared}, Writable: []string{writable}}
	tests := []struct {
		name      string
		paths     HostPaths
		path      string
		namespace string
		writable  bool
		want      string
		wantErr   error  // errors.Is
		wantMsg   string // substring
	}{
		{"read-only file in a shared root", roots, filepath.Join(shared, "vmlinuz"), "team-a", false, filepath.Join(shared, "vmlinuz"), nil, ""},
		{"file in a shared root's subdirectory", roots, filepath.Join(shared, "sub", "disk.qcow2"), "team-a", false, filepath.Join(shared, "sub", "disk.qcow2"), nil, ""},
		{"writable file in a shared root", roots, filepath.Join(shared, "vmlinuz"), "team-a", true, "", ErrReadOnlyRoot, "attach it readOnly"},
		{"writable file in the own namespace", roots, filepath.Join(writable, "team-a", "data.img"), "team-a", true, filepath.Join(writable, "team-a", "data.img"), nil, ""},
		{"read-only file in the own namespace", roots, filepath.Join(writable, "team-a", "data.img"), "team-a", false, filepath.Join(writable, "team-a", "data.img"), nil, ""},
		{"file in another namespace", roots, filepath.Join(writable, "team-b", "data.img"), "team-a", true, "", ErrOutsideRoots, filepath.Join(writable, "team-a")},
		{"file in another namespace, read-only", roots, filepath.Join(writable, "team-b", "data.img"), "team-a", false, "", ErrOutsideRoots, ""},
		{"symlink into another namespace", roots, filepath.Join(writable, "team-a", "peek"), "team-a", false, "", ErrOutsideRoots, "resolving to"},
		{"namespace directory that is a symlink", roots, filepath.Join(writable, "team-c", "data.img"), "team-c", true, "", ErrOutsideRoots, ""},
		{"symlink into the shared root, writable", roots, filepath.Join(writable, "team-a", "kernel"), "team-a", true, "", ErrReadOnlyRoot, ""},
		{"symlink into the shared root, read-only", roots, filepath.Join(writable, "team-a", "kernel"), "team-a", false, filepath.Join(shared, "vmlinuz"), nil, ""},
		{"writable root itself", roots, filepath.Join(writable, "team-a", "..", "team-b", "data.img"), "team-a", true, "", ErrOutsideRoots, ""},
		{"namespace directory itself", roots, filepath.Join(writable, "team-a"), "team-a", true, "", ErrNotAFile, ""},
		{"symlink staying inside", roots, filepath.Join(shared, "inside"), "team-a", false, filepath.Join(shared, "sub", "disk.qcow2"), nil, ""},
		{"through a directory symlink staying inside", roots, filepath.Join(shared, "subdir", "disk.qcow2"), "team-a", false, filepath.Join(shared, "sub", "disk.qcow2"), nil, ""},
		{"root given through a symlink", HostPaths{Shared: []string{rootLink}}, filepath.Join(shared, "vmlinuz"), "team-a", false, filepath.Join(shared, "vmlinuz"), nil, ""},
		{"path given through the root's symlink", roots, filepath.Join(rootLink, "vmlinuz"), "team-a", false, filepath.Join(shared, "vmlinuz"), nil, ""},
		{"symlink escaping", roots, filepath.Join(shared, "escape"), "team-a", false, "", ErrOutsideRoots, "resolving to"},
		{"directory symlink escaping", roots, filepath.Join(shared, "escape-dir", "shadow"), "team-a", false, "", ErrOutsideRoots, "resolving to"},
		{"dot-dot escaping", roots, shared + "/../secret/shadow", "team-a", false, "", ErrOutsideRoots, ""},
		{"sibling with a common prefix", roots, filepath.Join(base, "images-evil", "disk.img"), "team-a", false, "", ErrOutsideRoots, ""},
		{"dangling symlink", roots, filepath.Join(shared, "dangling"), "team-a", false, "", os.ErrNotExist, ""},
		{"missing file", roots, filepath.Join(shared, "nope"), "team-a", false, "", os.ErrNotExist, ""},
		{"relative path", roots, "images/vmlinuz", "team-a", false, "", nil, "not absolute"},
		{"no roots", HostPaths{}, filepath.Join(shared, "vmlinuz"), "team-a", false, "", ErrOutsideRoots, "no roots"},
		{"missing root ignored", HostPaths{Shared: []string{"/nonexistent", shared}}, filepath.Join(shared, "vmlinuz"), "team-a", false, filepath.Join(shared, "vmlinuz"), nil, ""},
		{"a directory", roots, filepath.Join(shared, "sub"), "team-a", false, "", ErrNotAFile, ""},
		{"a character device", HostPaths{Shared: []string{"/"}}, "/dev/null", "team-a", false, "", ErrNotAFile, ""},
		{"empty namespace", roots, filepath.Join(writable, "team-a", "data.img"), "", true, "", nil, "invalid namespace"},
		{"dot-dot namespace", roots, filepath.Join(writable, "team-a", "data.img"), "..", true, "", nil, "invalid namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.paths.Confine(tt.path, tt.namespace, tt.writable)
			if tt.wantErr == nil && tt.wantMsg == "" {
				if err != nil || got != tt.want {
					t.Fatalf("Confine(%s) = %q, %v; want %q", tt.path, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Confine(%s) = %q; want an error", tt.path, got)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Confine(%s) error %v; want %v", tt.path, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Confine(%s) error %q lacks %q", tt.path, err, tt.wantMsg)
			}
			if reason, permanent := Reason(err); tt.wantErr != nil && tt.wantErr != os.ErrNotExist && (reason != "HostPathNotAllowed" || !permanent) {
				t.Errorf("reason %q (permanent %v), want HostPathNotAllowed", reason, permanent)
			}
		})
	}
}

// TestHostPathDiskFormat: a qcow2 hostPath disk is inspected (it could name
// a backing file); a raw one is not, since QEMU never reads it as anything
// but raw whatever its guest wrote into it.
func TestHostPathDiskFormat(t *testing.T) {
	requireTool(t, "qemu-img")
	requireTool(t, "prlimit")
	ctx := context.Background()
	dir := t.TempDir()
	ns := filepath.Join(dir, "team-a")
	if err := os.MkdirAll(ns, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "host-secret.txt")
	writeFile(t, secret, []byte("top secret"), 0o600)
	evil := filepath.Join(ns, "evil.img")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", evil, "1M")
	roots := HostPaths{Writable: []string{dir}}

	if _, err := roots.Disk(ctx, evil, "team-a", QCOW2, true); !errors.Is(err, ErrBackingFile) {
		t.Errorf("qcow2 hostPath with a backing file: %v, want ErrBackingFile", err)
	}
	// Declared raw: used as raw, whatever its first bytes say.
	if got, err := roots.Disk(ctx, evil, "team-a", Raw, true); err != nil || got != evil {
		t.Errorf("raw hostPath = %q, %v; want it accepted as raw", got, err)
	}
	if _, err := roots.Disk(ctx, evil, "team-a", "", true); err == nil {
		t.Errorf("hostPath without a format accepted")
	}
}
