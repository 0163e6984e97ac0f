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

// Package libvirtd runs private libvirt hosts side by side on one machine:
// each is a libvirtd with its own virtlogd, in a mount namespace of its own
// (private /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt
// and /var/log/libvirt, bind-mounted from a directory the host owns) and a
// named network namespace of its own, with a distinct host_uuid. Their QEMU
// processes inherit both namespaces, so two hosts never see each other's
// domains, and a guest's network (user-mode NAT today, managed networks
// next) lives in its host's network namespace, never in the machine's.
//
// Both namespaces are pinned (the network namespace by `ip netns add`, the
// mount namespace by a bind mount of its nsfs file), so that a daemon
// started again, after a crash or a `make down`, enters the same ones and
// adopts the QEMU processes that kept running there. Ensure creates what
// is missing and leaves what exists; Remove is the end of a host: it kills
// whatever still runs in its network namespace and removes both namespaces.
//
// A host's directory (Host.Dir):
//
//	etc/      -> /etc/libvirt: libvirtd.conf, qemu.conf, virtlogd.conf
//	             (rewritten by Ensure), libvirt's persistent domain XML
//	run/      -> /run/libvirt: libvirt-sock (what clients connect to,
//	             Host.Socket), virtlogd-sock, qemu/<domain>.{pid,xml},
//	             libvirtd.pid, virtlogd.pid
//	lib/      -> /var/lib/libvirt: monitor sockets, saved state
//	cache/    -> /var/cache/libvirt: the QEMU capabilities cache
//	log/      -> /var/log/libvirt: qemu/<domain>.log
//	ns/       a private bind mount holding mnt, the pinned mount namespace
//
// Paths inside the host are the usual ones, so everything libvirt builds
// from them (monitor sockets above all, which must fit in 108 bytes) stays
// short; only the client socket is reached from outside, at
// Dir/run/libvirt-sock: `virsh -c 'qemu:///system?socket=DIR/run/libvirt-sock'`.
//
// A Fabric connects hosts: a bridge in a network namespace of its own,
// each host attached by a veth pair (its end named FabricLink) with an
// address the caller assigns. Nothing of it is in the machine's own
// network namespace, so traffic between hosts (live migration) never
// leaves the namespaces the project created.
//
// The launcher runs a host's daemons as supervised components from
// Host.VirtlogdCommand and Host.LibvirtdCommand; tests that need a libvirtd
// for a while run them with Start.
package libvirtd
