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

// Package pidfile reads the PID files of processes a test is about to
// signal (libvirtd, QEMU, a vessel-apiserver). A PID from such a file goes
// to kill(2), where 0 means the caller's whole process group, -1 every
// process the caller may signal, and 1 init: an empty, truncated or garbled
// file must be an error, never one of those.
package pidfile

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Read returns the PID recorded in path. It fails when the file cannot be
// read, does not hold exactly one decimal number, or names a PID <= 1.
func Read(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read PID file: %w", err)
	}
	text := strings.TrimSpace(string(data))
	pid, err := strconv.Atoi(text)
	if err != nil {
		return 0, fmt.Errorf("PID file %s holds %q, not a PID", path, text)
	}
	if pid <= 1 {
		return 0, fmt.Errorf("PID file %s names PID %d: refusing to signal it", path, pid)
	}
	return pid, nil
}
