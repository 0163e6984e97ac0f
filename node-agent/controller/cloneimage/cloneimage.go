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

// Package cloneimage names where a node keeps clone images (frozen disk
// copies and, for memory clones, the memory of a guest; see
// hypervisor.Cloner), for the controllers that make and use them: the
// snapshot controller captures one with every memory snapshot, the clone
// controller captures one per clone of a VM and collects those no longer
// needed.
package cloneimage

import (
	"path/filepath"
	"strings"
)

// Subdirectory of the agent's state directory.
const Subdir = "clone-images"

// Prefixes of an image directory's name: whose image it is.
const (
	snapshotPrefix = "snapshot-"
	clonePrefix    = "clone-"
)

// ForSnapshot is the image captured with the VirtualMachineSnapshot of UID
// uid, shared by every clone of it.
func ForSnapshot(stateDir, uid string) string {
	return filepath.Join(stateDir, Subdir, snapshotPrefix+uid)
}

// ForClone is the image captured from a VM for the VirtualMachineClone of
// UID uid alone.
func ForClone(stateDir, uid string) string {
	return filepath.Join(stateDir, Subdir, clonePrefix+uid)
}

// Owner says whose image the directory dir is: a snapshot's or a clone's
// UID; both empty for a directory that is neither.
func Owner(dir string) (snapshotUID, cloneUID string) {
	base := filepath.Base(dir)
	if uid, ok := strings.CutPrefix(base, snapshotPrefix); ok {
		return uid, ""
	}
	if uid, ok := strings.CutPrefix(base, clonePrefix); ok {
		return "", uid
	}
	return "", ""
}
