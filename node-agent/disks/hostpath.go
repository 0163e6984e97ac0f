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
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// HostPaths are the host directories a VM's hostPath sources may name.
// QEMU runs as root: whatever a tenant may name here, the guest can read,
// and, for a writable disk, overwrite.
type HostPaths struct {
	// Shared roots hold files any tenant may read, never write: kernels,
	// initrds, read-only disks.
	Shared []string
	// Writable roots are divided per namespace: a VM may only use files
	// under <root>/<its namespace>/, read-only or writable.
	Writable []string
	// MaxVirtualSize bounds the disk a qcow2 file makes (0: no limit).
	MaxVirtualSize int64
}

// Confine resolves path on the host (following every symlink) and returns
// the resolved path if a VM in namespace may use it, writable or not. The
// resolved file must lie under a shared root (and then not be writable) or
// under <writable root>/<namespace>/, and be a regular file or a block
// device. A symlink that leads out of those directories is refused, also one
// from a namespace's directory into another's or into a shared root.
func (h HostPaths) Confine(path, namespace string, writable bool) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("host path %q is not absolute", path)
	}
	if namespace == "" || strings.ContainsRune(namespace, '/') || namespace == "." || namespace == ".." {
		return "", fmt.Errorf("host path %q: invalid namespace %q", path, namespace)
	}
	if len(h.Shared) == 0 && len(h.Writable) == 0 {
		return "", fmt.Errorf("host path %q: %w (no roots are allowed on this node)", path, ErrOutsideRoots)
	}
	resolved, err := filepath.EvalSymlinks(filepath.Clean(path))
	if err != nil {
		return "", fmt.Errorf("host path %q: %w", path, err)
	}
	shown := fmt.Sprintf("host path %q", path)
	if resolved != filepath.Clean(path) {
		shown = fmt.Sprintf("host path %q (resolving to %q)", path, resolved)
	}

	for _, root := range resolveRoots(h.Writable) {
		if within(resolved, filepath.Join(root, namespace)) {
			return resolved, checkFileType(resolved, shown)
		}
	}
	for _, root := range resolveRoots(h.Shared) {
		if within(resolved, root) {
			if writable {
				return "", fmt.Errorf("%s is under the shared root %s: %w to VMs; attach it readOnly, or use a file under a writable root's %s/ directory", shown, root, ErrReadOnlyRoot, namespace)
			}
			return resolved, checkFileType(resolved, shown)
		}
	}
	var allowed []string
	allowed = append(allowed, h.Shared...)
	for _, w := range h.Writable {
		allowed = append(allowed, filepath.Join(w, namespace))
	}
	return "", fmt.Errorf("%s is %w for namespace %s: %s", shown, ErrOutsideRoots, namespace, strings.Join(allowed, ", "))
}

// resolveRoots resolves each root's symlinks; a root that does not exist
// holds nothing and is left out.
func resolveRoots(roots []string) []string {
	var out []string
	for _, root := range roots {
		r, err := filepath.EvalSymlinks(filepath.Clean(root))
		if err == nil {
			out = append(out, r)
		}
	}
	return out
}

// checkFileType refuses what QEMU should never open as a disk or kernel:
// directories, character devices (/dev/mem), pipes and sockets.
func checkFileType(resolved, shown string) error {
	st, err := os.Stat(resolved)
	if err != nil {
		return fmt.Errorf("%s: %w", shown, err)
	}
	mode := st.Mode()
	if mode.IsRegular() || (mode&os.ModeDevice != 0 && mode&os.ModeCharDevice == 0) {
		return nil
	}
	return fmt.Errorf("%s is %w (mode %v)", shown, ErrNotAFile, mode.Type())
}

func within(path, root string) bool {
	if root == "/" {
		return true
	}
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return false
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, "../"))
}
