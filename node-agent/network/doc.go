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

// Package network is the managed guest network of one hypervisor: the
// network Managed interfaces join. It lives in one network namespace (the
// host's own, or the one the operator names, where the hypervisor's
// libvirtd also runs, so libvirt's taps land next to the bridges):
//
//   - one Linux bridge per tenant namespace ("vb<index>", gateway .1 of a
//     /24 taken from the pool), so VMs of one namespace share a layer-2
//     segment and those of different namespaces share nothing;
//   - one dnsmasq per bridge, serving DHCP only (no DNS: it would forward
//     queries from the hypervisor), and only to the MACs the agent
//     registered, each with the address the agent reserved for it; its
//     lease file is where the agent reads the addresses it reports;
//   - one nftables ruleset (tables "inet vessel" and "bridge vessel",
//     replaced as a whole in one transaction, so re-applying never
//     duplicates a rule): outbound NAT, no forwarding between bridges,
//     nothing from guests to the hypervisor itself but DHCP, and on every
//     guest port (tap "vt<hash>") only the MAC and IP address the agent
//     gave it (anti-spoofing; libvirt's nwfilter would need the host's
//     ebtables/iptables, which a private libvirtd cannot own).
//
// What is set up is recorded in a state file, so a restarted agent
// re-applies the same bridges, addresses and rules, and re-adopts the
// dnsmasq processes (they run detached and keep their leases).
//
// Commands run inside the namespace through nsenter (ip, nft, sysctl,
// dnsmasq), so no Go thread ever changes namespace for them.
package network
