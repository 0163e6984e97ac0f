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

// Package migrationproxy carries live migrations between two hypervisors'
// agents, after KubeVirt's migration proxy. libvirt and QEMU talk plain
// TCP and unix sockets; they never leave their hypervisor's namespaces
// that way. Instead:
//
//   - the target agent listens on its fabric address with mutual TLS: its
//     own serving certificate, and the peer must present the serving
//     certificate the same CA issued to the hypervisor that is the source
//     of a Running migration to this one (Server);
//   - the source agent offers its libvirtd a unix socket (the peer-to-peer
//     dconnuri) and its QEMU two ports on 127.0.0.1 in the hypervisor's
//     network namespace (the memory stream and the NBD disk copy), and
//     carries every connection to them over that mutual TLS (Tunnel);
//   - the target agent connects each stream to its libvirtd's socket or to
//     the same port on 127.0.0.1 in its own namespace, where the incoming
//     QEMU listens, and to nothing else.
//
// Each TLS connection starts with one JSON line, a Header: which migration
// and which stream. A prepare stream carries the files the target needs
// before libvirt starts (PrepareRequest/PrepareResponse).
package migrationproxy
