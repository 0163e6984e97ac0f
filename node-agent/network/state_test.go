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
	"path/filepath"
	"strings"
	"testing"
)

var pool = netip.MustParsePrefix("10.200.0.0/16")

func TestAllocationIsStableAndReusesFreedSlots(t *testing.T) {
	s := &state{}
	a, _ := s.allocateNetwork("team-a", pool, -1)
	b, _ := s.allocateNetwork("team-b", pool, -1)
	if a.Index != 0 || b.Index != 1 {
		t.Fatalf("indexes: team-a %d, team-b %d, want 0 and 1", a.Index, b.Index)
	}
	if again, _ := s.allocateNetwork("team-a", pool, -1); again != a {
		t.Fatal("a namespace's second VM got another network")
	}
	sub, _ := subnet(pool, b.Index)
	if sub.String() != "10.200.1.0/24" {
		t.Fatalf("subnet of index 1 = %s", sub)
	}
	p1, _ := b.allocatePort("u1/default", "52:54:00:00:00:01", sub, netip.Addr{})
	p2, _ := b.allocatePort("u2/default", "52:54:00:00:00:02", sub, netip.Addr{})
	if p1.IP.String() != "10.200.1.2" || p2.IP.String() != "10.200.1.3" {
		t.Fatalf("addresses %s, %s; want .2 and .3 (the gateway is .1)", p1.IP, p2.IP)
	}
	if again, _ := b.allocatePort("u1/default", "52:54:00:00:00:01", sub, netip.Addr{}); again != p1 {
		t.Fatalf("re-attaching moved the port: %+v then %+v", p1, again)
	}
	delete(b.Ports, "u1/default")
	if p3, _ := b.allocatePort("u3/default", "52:54:00:00:00:03", sub, netip.Addr{}); p3.IP != p1.IP {
		t.Fatalf("freed address not reused: got %s", p3.IP)
	}
	delete(s.Networks, "team-a")
	if c, _ := s.allocateNetwork("team-c", pool, -1); c.Index != 0 {
		t.Fatalf("freed network index not reused: %d", c.Index)
	}
}

func TestSubnetFull(t *testing.T) {
	n := &tenantNetwork{Ports: map[string]Port{}}
	sub := netip.MustParsePrefix("10.200.0.0/24")
	for i := 0; i < 253; i++ { // .2 to .254
		if _, err := n.allocatePort(string(rune('a'+i%26))+strings.Repeat("x", i), "52:54:00:00:00:01", sub, netip.Addr{}); err != nil {
			t.Fatalf("port %d: %v", i, err)
		}
	}
	if _, err := n.allocatePort("one-too-many", "52:54:00:00:00:01", sub, netip.Addr{}); err == nil {
		t.Fatal("a 254th guest got an address (broadcast?)")
	}
	if _, err := subnet(pool, 256); err == nil {
		t.Fatal("a /16 pool gave a 257th /24")
	}
}

func TestTapNames(t *testing.T) {
	n := tapName("0b0e6a8c-4a5b-4c1f-9d3e-2f6f5b7a9c01/default")
	if len(n) > 15 || !strings.HasPrefix(n, tapPrefix) {
		t.Fatalf("tap name %q: must fit IFNAMSIZ and carry the prefix the rules match", n)
	}
	if n == tapName("0b0e6a8c-4a5b-4c1f-9d3e-2f6f5b7a9c01/lan") {
		t.Fatal("two interfaces of one VM share a tap name")
	}
}

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	s := &state{}
	n, _ := s.allocateNetwork("team-a", pool, -1)
	sub, _ := subnet(pool, 0)
	n.allocatePort("u1/default", "52:54:00:00:00:01", sub, netip.Addr{})
	if err := s.save(path); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if ruleset(got, pool) != ruleset(s, pool) || dnsmasqHosts(got.Networks["team-a"]) != dnsmasqHosts(n) {
		t.Fatal("a restarted agent would apply something else than what was saved")
	}
}

// A guest arriving by live migration keeps its address when its
// namespace's /24 is free here or is already that namespace's, and the
// address is free in it; otherwise it gets another.
func TestCarriedAddress(t *testing.T) {
	carried := netip.MustParseAddr("10.200.3.7")
	if i := indexOf(pool, carried); i != 3 {
		t.Fatalf("index of %s in %s: %d, want 3", carried, pool, i)
	}
	for _, bad := range []string{"10.201.0.7", "192.168.0.1", "::1"} {
		if i := indexOf(pool, netip.MustParseAddr(bad)); i != -1 {
			t.Errorf("index of %s in %s: %d, want -1", bad, pool, i)
		}
	}

	s := &state{}
	n, _ := s.allocateNetwork("team-a", pool, indexOf(pool, carried))
	if n.Index != 3 {
		t.Fatalf("a new network for a carried address has index %d, want 3", n.Index)
	}
	sub, _ := subnet(pool, n.Index)
	if p, _ := n.allocatePort("u1/default", "52:54:00:00:00:01", sub, carried); p.IP != carried {
		t.Fatalf("carried address not kept: %s", p.IP)
	}
	if p, _ := n.allocatePort("u2/default", "52:54:00:00:00:02", sub, carried); p.IP == carried {
		t.Fatal("a second guest got an address in use")
	}
	for _, reserved := range []string{"10.200.3.0", "10.200.3.1", "10.200.3.255"} {
		if p, _ := n.allocatePort("u-"+reserved, "52:54:00:00:00:03", sub, netip.MustParseAddr(reserved)); p.IP.String() == reserved {
			t.Errorf("a guest got %s, the network's own address", reserved)
		}
	}

	// The /24 is another namespace's here: a network of its own, and
	// another address.
	b, _ := s.allocateNetwork("team-b", pool, indexOf(pool, carried))
	if b.Index == 3 {
		t.Fatal("team-b got team-a's /24")
	}
}
