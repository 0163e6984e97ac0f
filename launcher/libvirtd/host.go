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
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

// Host is one private libvirt host. Name, Dir, Netns and UUID are
// required; a host keeps all four for its whole life.
type Host struct {
	// Name names the host in messages (the launcher uses the hypervisor's
	// name).
	Name string
	// Dir is the host's directory, absolute; see the package documentation.
	Dir string
	// Netns names the host's network namespace (/run/netns/<Netns>).
	Netns string
	// UUID is libvirtd's host_uuid. Hosts on one machine must differ, or
	// libvirt refuses to migrate between them as between a host and itself.
	UUID string
	// CapabilitiesSeed, when set, is a directory with a copy of a QEMU
	// capabilities cache: Ensure copies it into a host whose cache is
	// empty, which spares the new libvirtd its probe of QEMU (8 s here).
	// libvirt checks the copy against the QEMU and libvirt binaries and
	// probes again if it is stale. See SaveCapabilities.
	CapabilitiesSeed string
	// Reaper, when set, is cmd/vessel-reaper: libvirtd runs under it, and
	// the QEMUs libvirtd daemonizes are reaped the moment they exit.
	// libvirt's destroy waits until they are, so where PID 1 reaps late
	// (about 1 s on the machines Vessel is developed on) every domain
	// stop takes that long without it.
	Reaper string
}

// FabricLink is the name of a host's link to its Fabric, inside its
// network namespace.
const FabricLink = "fabric0"

// libvirtDirs are the directories a host has of its own, by the name of
// its subdirectory of Host.Dir.
var libvirtDirs = []struct{ sub, target string }{
	{"etc", "/etc/libvirt"},
	{"run", "/run/libvirt"},
	{"lib", "/var/lib/libvirt"},
	{"cache", "/var/cache/libvirt"},
	{"log", "/var/log/libvirt"},
}

// Socket is libvirtd's read-write socket as the machine sees it.
func (h Host) Socket() string { return filepath.Join(h.Dir, "run", "libvirt-sock") }

// URI is the connection URI of the host's QEMU driver, for virsh -c.
func (h Host) URI() string { return "qemu:///system?socket=" + h.Socket() }

// NetnsPath is the file that pins the host's network namespace.
func (h Host) NetnsPath() string { return netnsPath(h.Netns) }

// MountNamespace is the file that pins the host's mount namespace.
func (h Host) MountNamespace() string { return filepath.Join(h.nsDir(), "mnt") }

// QEMULogDir holds QEMU's log of each domain, <domain>.log.
func (h Host) QEMULogDir() string { return filepath.Join(h.Dir, "log", "qemu") }

// QEMUPIDFile is where libvirtd records the pid of a running domain's QEMU.
func (h Host) QEMUPIDFile(domain string) string {
	return filepath.Join(h.Dir, "run", "qemu", domain+".pid")
}

func (h Host) nsDir() string               { return filepath.Join(h.Dir, "ns") }
func (h Host) confFile(name string) string { return filepath.Join(h.Dir, "etc", name) }
func (h Host) capabilitiesDir() string {
	return filepath.Join(h.Dir, "cache", "qemu", "capabilities")
}

// maxSocketPath is what a UNIX socket path may take (sun_path, with its
// terminating NUL).
const maxSocketPath = 107

var netnsName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Validate checks the host's fields.
func (h Host) Validate() error {
	var errs []error
	if h.Name == "" {
		errs = append(errs, errors.New("no name"))
	}
	if !filepath.IsAbs(h.Dir) {
		errs = append(errs, fmt.Errorf("directory %q is not absolute", h.Dir))
	} else if n := len(h.Socket()); n > maxSocketPath {
		errs = append(errs, fmt.Errorf("socket path %s is %d bytes long, more than a UNIX socket takes (%d): choose a shorter directory", h.Socket(), n, maxSocketPath))
	}
	if !netnsName.MatchString(h.Netns) || len(h.Netns) > 64 {
		errs = append(errs, fmt.Errorf("network namespace name %q: want letters, digits, '-', '_' or '.', at most 64", h.Netns))
	}
	if !uuidPattern.MatchString(h.UUID) {
		errs = append(errs, fmt.Errorf("host UUID %q is not a UUID", h.UUID))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("libvirt host %s: %w", h.Name, err)
	}
	return nil
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Ensure makes the host ready for its daemons to start: its directories and
// configuration, its network namespace (loopback up) and its mount
// namespace (entered from the network namespace, so that its /sys shows
// the host's own network devices). What exists is kept, so a restarted
// daemon finds the namespaces its QEMU processes run in.
func (h Host) Ensure(ctx context.Context) error {
	if err := h.Validate(); err != nil {
		return err
	}
	for _, d := range libvirtDirs {
		if err := os.MkdirAll(filepath.Join(h.Dir, d.sub), 0o700); err != nil {
			return fmt.Errorf("create the directories of libvirt host %s: %w", h.Name, err)
		}
	}
	if err := h.writeConfig(); err != nil {
		return err
	}
	if err := h.seedCapabilities(); err != nil {
		return err
	}
	if err := ensureNetns(ctx, h.Netns); err != nil {
		return fmt.Errorf("libvirt host %s: %w", h.Name, err)
	}
	if err := h.ensureMountNamespace(ctx); err != nil {
		return fmt.Errorf("libvirt host %s: %w", h.Name, err)
	}
	return nil
}
