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

// Package isolation is the end-to-end test of tenant isolation on the
// host's files and network: a tenant (alice, edit in team-a) tries, through
// kubectl and a real kube-apiserver, to make QEMU (running as root under
// a hypervisor's libvirtd) read a host file through an image's backing chain,
// a VMDK extent or a raw disk rewritten into a qcow2 header; to make a
// disk larger than the hypervisor allows; to write a shared root's files;
// and to make the agent fetch from loopback. Each is
// refused before any domain is defined, or harmless, with a reason she can
// read in `kubectl describe vm`, and no host file changes.
//
// Images are served from 127.0.0.2, which the suite's agent allow-lists
// (--image-allowed-cidrs=127.0.0.2/32); 127.0.0.1 stands for the host's
// internal services. Writable host paths live in a temporary root
// (--writable-host-path-roots) with a team-a directory.
package isolation
