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
	"os/exec"
	"path/filepath"
	"slices"
)

// Command is how one of a host's daemons runs: Enter (nsenter into the
// host's namespaces) execs Path with Args, so the process keeps the pid it
// was started with and its command line is the daemon's own; or, for a
// libvirtd with Host.Reaper, vessel-reaper's, naming libvirtd.
type Command struct {
	Enter []string
	Path  string
	Args  []string
}

// Argv is the whole command line to start.
func (c Command) Argv() []string {
	return slices.Concat(c.Enter, []string{c.Path}, c.Args)
}

// VirtlogdCommand runs the host's virtlogd in the foreground. Its sockets
// are in the host's /run/libvirt, where its libvirtd looks for them.
func (h Host) VirtlogdCommand() Command {
	return Command{
		Enter: h.enter(),
		Path:  lookPath("virtlogd"),
		Args: []string{
			"--config=" + h.confFile("virtlogd.conf"),
			"--pid-file=" + filepath.Join(h.Dir, "run", "virtlogd.pid"),
		},
	}
}

// LibvirtdCommand runs the host's libvirtd in the foreground. Both paths
// are given as the machine sees them (they name the host's directory,
// which is how a process is known to belong to it); inside, they are the
// same files.
func (h Host) LibvirtdCommand() Command {
	enter := h.enter()
	if h.Reaper != "" {
		// In the host's namespaces too: nsenter execs vessel-reaper.
		enter = append(enter, h.Reaper)
	}
	return Command{
		Enter: enter,
		Path:  lookPath("libvirtd"),
		Args: []string{
			"--config=" + h.confFile("libvirtd.conf"),
			"--pid-file=" + filepath.Join(h.Dir, "run", "libvirtd.pid"),
		},
	}
}

func (h Host) enter() []string {
	return []string{lookPath("nsenter"), "--net=" + h.NetnsPath(), "--mount=" + h.MountNamespace(), "--"}
}

// lookPath finds a program on $PATH or in /usr/sbin (where Debian puts
// libvirtd and virtlogd, and which a non-login root shell may lack).
func lookPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(dir, name)
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	return name // the start fails and says so
}
