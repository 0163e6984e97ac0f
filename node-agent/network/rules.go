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

package network

import (
	"fmt"
	"net/netip"
	"strings"
)

// Prefixes of the links this package owns; the rules match on them.
const (
	bridgePrefix    = "vb"
	tapPrefix       = "vt"
	bridgeTapPrefix = "vx"
)

// ruleset renders the whole nftables configuration of the managed network
// as one nft script. Each table is created, flushed by deletion and
// written again in the same transaction, so applying it any number of
// times leaves exactly one copy of every rule, and no packet ever sees a
// half-written ruleset. With no network left, the tables are only removed.
func ruleset(s *state, pool netip.Prefix) string {
	var b strings.Builder
	// "table X" first makes the delete succeed when X does not exist yet.
	b.WriteString("table inet vessel\ndelete table inet vessel\n")
	b.WriteString("table bridge vessel\ndelete table bridge vessel\n")
	if len(s.Networks) > 0 {
		writeManagedRules(&b, s, pool)
	}
	if len(s.Networks) > 0 || len(s.BridgePorts) > 0 {
		writeGuestPortRules(&b, s)
	}
	return b.String()
}

// writeManagedRules routes the managed network: NAT, nothing between
// namespaces' bridges, nothing from guests to the hypervisor.
func writeManagedRules(b *strings.Builder, s *state, pool netip.Prefix) {
	bridges := bridgePrefix + "*"
	fmt.Fprintf(b, `table inet vessel {
	chain input {
		type filter hook input priority filter; policy accept;
		# Guests reach nothing on the hypervisor but its DHCP server; they
		# answer what the hypervisor opened (port forwarding dials them).
		iifname "%[1]s" ct state established,related accept
		iifname "%[1]s" udp dport 67 accept
		iifname "%[1]s" drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
`, bridges)
	for _, ns := range s.namespaces() {
		br := bridgeName(s.Networks[ns].Index)
		fmt.Fprintf(b, "\t\t# %s\n\t\tiifname %q oifname %q accept\n", ns, br, br)
	}
	fmt.Fprintf(b, `		# No namespace reaches another's bridge.
		iifname "%[1]s" oifname "%[1]s" drop
		# Outside in: only replies to what the guests opened.
		oifname "%[1]s" ct state established,related accept
		oifname "%[1]s" drop
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %[2]s oifname != "%[1]s" masquerade
	}
}
`, bridges, pool.Masked())
}

// writeGuestPortRules pins what each guest port may send: on the managed
// network its MAC and address, on an operator's bridge its MAC (the
// addresses there are not the agent's to know), and never the answers of
// a DHCP server or an IPv6 router, which would take over its neighbours.
func writeGuestPortRules(b *strings.Builder, s *state) {
	var macs, ips, bridged, learned, learnedPorts []string
	for _, ns := range s.namespaces() {
		for _, p := range sortedPorts(s.Networks[ns]) {
			macs = append(macs, fmt.Sprintf("%q . %s", p.Tap, strings.ToLower(p.MAC)))
			ips = append(ips, fmt.Sprintf("%q . %s", p.Tap, p.IP))
		}
	}
	for _, p := range sortedBridgePorts(s) {
		bridged = append(bridged, fmt.Sprintf("%q . %s", p.Tap, strings.ToLower(p.MAC)))
		if ip, ok := s.learned[p.Tap]; ok {
			learned = append(learned, fmt.Sprintf("%q . %s", p.Tap, ip))
			learnedPorts = append(learnedPorts, fmt.Sprintf("%q", p.Tap))
		}
	}
	b.WriteString("table bridge vessel {\n")
	writeSet(b, "port_mac", "ifname . ether_addr", macs)
	writeSet(b, "port_ip", "ifname . ipv4_addr", ips)
	writeSet(b, "bridged_mac", "ifname . ether_addr", bridged)
	writeDynamicSet(b, learnedSet, "ifname . ipv4_addr", learned)
	writeDynamicSet(b, learnedPortSet, "ifname", learnedPorts)
	fmt.Fprintf(b, `	chain prerouting {
		type filter hook prerouting priority -300; policy accept;
		iifname "%s*" jump guest
		iifname "%s*" jump bridged
	}
	# What a guest port may send: its own MAC, and its own IPv4 address
	# (DHCP and ARP probes before it has one). No IPv6, no other protocol.
	chain guest {
		iifname . ether saddr != @port_mac drop
		arp operation { request, reply } arp saddr ip 0.0.0.0 accept
		ether type arp iifname . arp saddr ip != @port_ip drop
		ether type arp accept
		ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept
		ether type ip iifname . ip saddr != @port_ip drop
		ether type ip accept
		drop
	}
	# What a guest port on an operator's bridge may send: frames from its
	# own MAC, ARP naming that MAC, no DHCP or DHCPv6 server replies and no
	# IPv6 router advertisements; and IPv4 from the first address it uses
	# only (ARP or IP, DHCP's 0.0.0.0 aside), learned into %[3]s.
	chain bridged {
		iifname . ether saddr != @bridged_mac drop
		ether type arp iifname . arp saddr ether != @bridged_mac drop
		udp sport { 67, 547 } drop
		icmpv6 type { nd-router-advert, nd-redirect } drop
		arp operation { request, reply } arp saddr ip 0.0.0.0 accept
		ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept
		ether type arp iifname != @%[4]s update @%[4]s { iifname } update @%[3]s { iifname . arp saddr ip }
		ether type ip iifname != @%[4]s update @%[4]s { iifname } update @%[3]s { iifname . ip saddr }
		ether type arp iifname . arp saddr ip != @%[3]s drop
		ether type ip iifname . ip saddr != @%[3]s drop
		accept
	}
}
`, tapPrefix, bridgeTapPrefix, learnedSet, learnedPortSet)
}

// learnedSet holds the address each bridge port learned, learnedPortSet
// the ports that learned one.
const (
	learnedSet     = "bridged_ip"
	learnedPortSet = "bridged_learned"
)

// writeDynamicSet is writeSet for a set the rules add to.
func writeDynamicSet(b *strings.Builder, name, typ string, elems []string) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype %s\n\t\tflags dynamic\n", name, typ)
	if len(elems) > 0 {
		fmt.Fprintf(b, "\t\telements = { %s }\n", strings.Join(elems, ", "))
	}
	b.WriteString("\t}\n")
}

func writeSet(b *strings.Builder, name, typ string, elems []string) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype %s\n", name, typ)
	if len(elems) > 0 {
		fmt.Fprintf(b, "\t\telements = { %s }\n", strings.Join(elems, ", "))
	}
	b.WriteString("\t}\n")
}
