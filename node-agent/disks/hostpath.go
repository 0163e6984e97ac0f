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
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// ErrOutsideRoots says a host path is not under any allowed root.
var ErrOutsideRoots = errors.New("outside the allowed host path roots")

// ConfineHostPath resolves path (following every symlink) and returns it
// only if the result lies under one of roots, themselves resolved. A
// symlink inside a root that leads out of it is refused.
func ConfineHostPath(path string, roots []string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("host path %q is not absolute", path)
	}
	if len(roots) == 0 {
		return "", fmt.Errorf("host path %q: %w (no roots are allowed on this node)", path, ErrOutsideRoots)
	}
	resolved, err := filepath.EvalSymlinks(filepath.Clean(path))
	if err != nil {
		return "", fmt.Errorf("host path %q: %w", path, err)
	}
	for _, root := range roots {
		r, err := filepath.EvalSymlinks(filepath.Clean(root))
		if err != nil {
			continue // a root that does not exist holds nothing
		}
		if within(resolved, r) {
			return resolved, nil
		}
	}
	if resolved != filepath.Clean(path) {
		return "", fmt.Errorf("host path %q resolves to %q, %w %s", path, resolved, ErrOutsideRoots, strings.Join(roots, ", "))
	}
	return "", fmt.Errorf("host path %q is %w %s", path, ErrOutsideRoots, strings.Join(roots, ", "))
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
