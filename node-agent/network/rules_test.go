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
	"net/netip"
	"strings"
	"testing"
)

func TestRulesetEmptyOnlyRemovesTables(t *testing.T) {
	got := ruleset(&state{}, pool)
	if strings.Contains(got, "chain") {
		t.Fatalf("no network, yet rules:\n%s", got)
	}
	for _, want := range []string{"delete table inet vessel", "delete table bridge vessel"} {
		if !strings.Contains(got, want) {
			t.Fatalf("missing %q:\n%s", want, got)
		}
	}
}

func TestRuleset(t *testing.T) {
	s := &state{}
	a, _ := s.allocateNetwork("team-a", pool, -1)
	b, _ := s.allocateNetwork("team-b", pool, -1)
	subA, _ := subnet(pool, a.Index)
	subB, _ := subnet(pool, b.Index)
	pa, _ := a.allocatePort("ua/default", "52:54:00:AA:00:01", subA, netip.Addr{})
	pb, _ := b.allocatePort("ub/default", "52:54:00:bb:00:01", subB, netip.Addr{})
	got := ruleset(s, pool)
	for _, want := range []string{
		// Re-applying replaces, never appends.
		"table inet vessel\ndelete table inet vessel\n",
		// Within a namespace's bridge: allowed; between bridges: not.
		`iifname "vb0" oifname "vb0" accept`,
		`iifname "vb1" oifname "vb1" accept`,
		`iifname "vb*" oifname "vb*" drop`,
		// The hypervisor: DHCP only.
		`iifname "vb*" udp dport 67 accept`,
		// ...and the replies to the agent's port-forward connections.
		`iifname "vb*" ct state established,related accept`,
		`iifname "vb*" drop`,
		"ip saddr 10.200.0.0/16 oifname != \"vb*\" masquerade",
		// Each port: its own MAC (lower case, as nft prints it) and address.
		`"` + pa.Tap + `" . 52:54:00:aa:00:01`,
		`"` + pb.Tap + `" . 52:54:00:bb:00:01`,
		`"` + pa.Tap + `" . 10.200.0.2`,
		`"` + pb.Tap + `" . 10.200.1.2`,
		"iifname . ether saddr != @port_mac drop",
		"ether type ip iifname . ip saddr != @port_ip drop",
		"ether type arp iifname . arp saddr ip != @port_ip drop",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}
	// The intra-bridge accepts come before the cross-bridge drop.
	if strings.Index(got, `iifname "vb1" oifname "vb1" accept`) > strings.Index(got, `iifname "vb*" oifname "vb*" drop`) {
		t.Error("cross-namespace drop precedes a namespace's own accept")
	}
	if got != ruleset(s, pool) {
		t.Error("rendering is not deterministic")
	}
}

func TestDnsmasq(t *testing.T) {
	sub := netip.MustParsePrefix("10.200.3.0/24")
	conf := dnsmasqConfig("vb3", sub, "/state/vb3")
	for _, want := range []string{"interface=vb3\n", "port=0\n", "dhcp-range=10.200.3.2,static,255.255.255.0,infinite\n", "option:router,10.200.3.1\n", "dhcp-leasefile=/state/vb3/leases\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("dnsmasq.conf lacks %q:\n%s", want, conf)
		}
	}
	n := &tenantNetwork{Ports: map[string]Port{"u/default": {Tap: "vt1", MAC: "52:54:00:AB:CD:EF", IP: netip.MustParseAddr("10.200.3.7")}}}
	if got := dnsmasqHosts(n); got != "52:54:00:ab:cd:ef,10.200.3.7\n" {
		t.Errorf("hosts = %q", got)
	}
	leases := parseLeases("1764500000 52:54:00:ab:cd:ef 10.200.3.7 vessel *\nbroken line\n1764500000 52:54:00:00:00:09 not-an-ip x *\n")
	if len(leases) != 1 || leases[0].MAC != "52:54:00:ab:cd:ef" || leases[0].IP.String() != "10.200.3.7" {
		t.Errorf("leases = %+v", leases)
	}
}
