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

// dnsmasqConfig is the configuration of one bridge's DHCP server. "static"
// ranges answer only MACs listed in the hosts file, each with its reserved
// address: a guest that changes its MAC gets no lease. port=0 turns DNS
// off; dnsmasq would otherwise forward guests' queries from the
// hypervisor's namespace.
func dnsmasqConfig(bridge string, sub netip.Prefix, dir string) string {
	gw := gateway(sub)
	var b strings.Builder
	fmt.Fprintf(&b, "interface=%s\n", bridge)
	b.WriteString("bind-interfaces\nexcept-interface=lo\nport=0\ndhcp-authoritative\nno-resolv\nno-hosts\n")
	// Infinite leases: the address is the MAC's for the VM's lifetime
	// anyway, and a guest that never renews (the test guest's udhcpc -q)
	// keeps its lease, so status keeps showing it.
	fmt.Fprintf(&b, "dhcp-range=%s,static,255.255.255.0,infinite\n", gw.Next())
	fmt.Fprintf(&b, "dhcp-option=option:router,%s\n", gw)
	fmt.Fprintf(&b, "dhcp-hostsfile=%s/hosts\n", dir)
	fmt.Fprintf(&b, "dhcp-leasefile=%s/leases\n", dir)
	fmt.Fprintf(&b, "pid-file=%s/dnsmasq.pid\n", dir)
	fmt.Fprintf(&b, "log-facility=%s/dnsmasq.log\n", dir)
	b.WriteString("user=root\n")
	return b.String()
}

// dnsmasqHosts is the hosts file: one MAC,address line per port.
func dnsmasqHosts(n *tenantNetwork) string {
	var b strings.Builder
	for _, p := range sortedPorts(n) {
		fmt.Fprintf(&b, "%s,%s\n", strings.ToLower(p.MAC), p.IP)
	}
	return b.String()
}

// Lease is one line of a dnsmasq lease file.
type Lease struct {
	MAC string
	IP  netip.Addr
}

// parseLeases reads a dnsmasq lease file: "expiry mac ip hostname
// client-id" per line.
func parseLeases(data string) []Lease {
	var out []Lease
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		ip, err := netip.ParseAddr(f[2])
		if err != nil {
			continue
		}
		out = append(out, Lease{MAC: strings.ToLower(f[1]), IP: ip})
	}
	return out
}
