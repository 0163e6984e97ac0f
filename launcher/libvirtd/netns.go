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

package libvirtd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` pins named network namespaces.
const netnsDir = "/run/netns"

func netnsPath(name string) string { return filepath.Join(netnsDir, name) }

// isNamespacePin reports whether path is a bind mount of a namespace file,
// as `ip netns add` and `unshare --mount=FILE` leave. After a reboot only
// the empty file would be left, if it was on a persistent file system.
func isNamespacePin(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// ensureNetns creates the named network namespace unless it exists, and
// brings its loopback up.
func ensureNetns(ctx context.Context, name string) error {
	if !isNamespacePin(netnsPath(name)) {
		// A file that pins nothing is what a reboot leaves behind.
		if err := os.Remove(netnsPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale %s: %w", netnsPath(name), err)
		}
		if _, err := run(ctx, "ip", "netns", "add", name); err != nil {
			return fmt.Errorf("create network namespace %s: %w", name, err)
		}
	}
	if _, err := run(ctx, "ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		return fmt.Errorf("bring up loopback in network namespace %s: %w", name, err)
	}
	return nil
}

// deleteNetns removes the named network namespace, if it exists.
func deleteNetns(ctx context.Context, name string) error {
	if _, err := os.Lstat(netnsPath(name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := run(ctx, "ip", "netns", "delete", name); err != nil {
		return fmt.Errorf("delete network namespace %s: %w", name, err)
	}
	return nil
}

// PIDsInNetns lists the processes that run in the named network namespace
// (none when it does not exist).
func PIDsInNetns(name string) ([]int, error) {
	want, err := os.Stat(netnsPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", name, err)
	}
	procs, err := filepath.Glob("/proc/[0-9]*/ns/net")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range procs {
		fi, err := os.Stat(p)
		if err != nil || !os.SameFile(fi, want) {
			continue // gone meanwhile, or elsewhere
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		if err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// QEMUPIDs lists the QEMU processes that run in the host's network
// namespace: its guests.
func (h Host) QEMUPIDs() ([]int, error) {
	pids, err := PIDsInNetns(h.Netns)
	if err != nil {
		return nil, err
	}
	var qemus []int
	for _, pid := range pids {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		argv0, _, _ := bytes.Cut(cmdline, []byte{0})
		if strings.HasPrefix(filepath.Base(string(argv0)), "qemu-system") {
			qemus = append(qemus, pid)
		}
	}
	return qemus, nil
}

// killNetns kills every process in the named network namespace and waits
// (bounded) until they are gone.
func killNetns(name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids, err := PIDsInNetns(name)
		if err != nil || len(pids) == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still run in network namespace %s %v after SIGKILL", pids, name, timeout)
		}
		for _, pid := range pids {
			if pid == os.Getpid() {
				return fmt.Errorf("this process (pid %d) runs in network namespace %s: not killing itself", pid, name)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run runs a command and returns its standard output; a failure says what
// ran and what it printed.
func run(ctx context.Context, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}
