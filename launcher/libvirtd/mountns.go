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
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ensureMountNamespace creates the host's mount namespace, from within its
// network namespace, unless the pin holds one already.
func (h Host) ensureMountNamespace(ctx context.Context) error {
	pin := h.MountNamespace()
	if isNamespacePin(pin) {
		return nil
	}
	// unshare pins a mount namespace only on a mount that is not shared
	// (the kernel refuses what could make a loop); a private bind mount
	// of the directory on itself is one, whatever / is.
	if err := privateBindMount(h.nsDir()); err != nil {
		return err
	}
	if err := os.WriteFile(pin, nil, 0o600); err != nil {
		return fmt.Errorf("create %s: %w", pin, err)
	}
	argv := []string{lookPath("nsenter"), "--net=" + h.NetnsPath(), "--",
		lookPath("unshare"), "--mount=" + pin, "--propagation=private", "--",
		"/bin/sh", "-c", mountScript(h)}
	if _, err := run(ctx, argv...); err != nil {
		return fmt.Errorf("create the mount namespace: %w", err)
	}
	return nil
}

// mountScript runs in the new mount namespace, while the network namespace
// is the host's. It leaves:
//   - no namespace pins copied from the machine's mount table (other
//     hosts' and `ip netns`'s): this namespace must not keep them alive;
//   - /sys mounted anew, so that it shows this network namespace's devices
//     (libvirt reads interfaces there), with the machine's cgroup
//     hierarchy moved over, which libvirt puts QEMU processes in;
//   - the host's directories over libvirt's.
func mountScript(h Host) string {
	cgroup := filepath.Join(h.nsDir(), "cgroup")
	var b strings.Builder
	b.WriteString("set -e\n")
	b.WriteString(`findmnt -rn -t nsfs -o TARGET | while read -r pin; do umount -l "$pin" || true; done` + "\n")
	fmt.Fprintf(&b, "if mountpoint -q /sys/fs/cgroup; then\n  mkdir -p %[1]s\n  mount --rbind /sys/fs/cgroup %[1]s\n  mount -t sysfs sysfs /sys\n  mount --move %[1]s /sys/fs/cgroup\nelse\n  mount -t sysfs sysfs /sys\nfi\n", shellQuote(cgroup))
	for _, d := range libvirtDirs {
		fmt.Fprintf(&b, "mkdir -p %[2]s && mount --bind %[1]s %[2]s\n", shellQuote(filepath.Join(h.Dir, d.sub)), shellQuote(d.target))
	}
	return b.String()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// privateBindMount makes dir a mount point of its own with private
// propagation.
func privateBindMount(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	mounted, err := isMountPoint(dir)
	if err != nil {
		return err
	}
	if !mounted {
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount %s on itself: %w", dir, err)
		}
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s a private mount: %w", dir, err)
	}
	return nil
}

// unmount detaches what is mounted on path; nothing mounted is no error.
func unmount(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	return nil
}

// isMountPoint reports whether dir is a mount point in this process's
// mount namespace.
func isMountPoint(dir string) (bool, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		// id parent major:minor root mountpoint ...
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == real {
			return true, nil
		}
	}
	return false, s.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
