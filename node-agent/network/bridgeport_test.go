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
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestRulesetBridgePortsOnly(t *testing.T) {
	tap := bridgeTapName("u/lan")
	s := &state{
		BridgePorts: map[string]BridgePort{"u/lan": {Tap: tap, MAC: "52:54:00:0a:0b:0c", Bridge: "br-lan"}},
		// What the kernel learned before a reload, and of a port gone since.
		learned: map[string]netip.Addr{tap: netip.MustParseAddr("192.168.77.2"), "vx0000000000": netip.MustParseAddr("192.168.77.9")},
	}
	got := ruleset(s, pool)
	if strings.Contains(got, "192.168.77.9") {
		t.Errorf("a gone port's learned address is carried over:\n%s", got)
	}
	if strings.Contains(got, "table inet vessel {") {
		t.Errorf("no managed network, yet its routing rules:\n%s", got)
	}
	for _, want := range []string{
		`"` + bridgeTapName("u/lan") + `" . 52:54:00:0a:0b:0c`,
		`iifname "vx*" jump bridged`,
		"iifname . ether saddr != @bridged_mac drop",
		"ether type arp iifname . arp saddr ether != @bridged_mac drop",
		"udp sport { 67, 547 } drop",
		// The learned address is carried over, the gone port's is not.
		`elements = { "` + tap + `" . 192.168.77.2 }`,
		`elements = { "` + tap + `" }`,
		"ether type ip iifname != @bridged_learned update @bridged_learned { iifname } update @bridged_ip { iifname . ip saddr }",
		"ether type ip iifname . ip saddr != @bridged_ip drop",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, got)
		}
	}
}

func TestValidateOperatorBridge(t *testing.T) {
	for name, ok := range map[string]bool{
		"br0": true, "lan-1": true,
		"": false, "br/0": false, "a-very-long-bridge": false,
		"vb0": false, "vt0123": false, "vx1": false,
	} {
		if err := ValidateOperatorBridge(name); (err == nil) != ok {
			t.Errorf("ValidateOperatorBridge(%q) = %v", name, err)
		}
	}
}

// TestBridgePortKeepsItsMAC joins an operator's bridge the way a guest does
// (a veth stands in for the tap, its far end in a "guest" namespace) and
// sends from the port's own MAC and first address, then from another
// address, then from another MAC: only the first reaches the bridge, also
// after the rules are reloaded.
func TestBridgePortKeepsItsMAC(t *testing.T) {
	path := testNetns(t)
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("needs busybox for ping (hack/install-libvirt.sh)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	guestNS := fmt.Sprintf("vessel-nettest-guest-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", guestNS).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", guestNS).Run() })

	m, err := New(Config{Netns: path, Dir: t.TempDir(), AllowedBridges: []string{"br-lan"}})
	if err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:0a:0b:0c"
	key := PortKey("u", "lan")

	if _, err := m.AttachBridge(ctx, key, mac, "docker0"); err == nil || !strings.Contains(err.Error(), `not allowed on this hypervisor: bridge "docker0": its agent allows br-lan`) {
		t.Fatalf("docker0: %v", err)
	}
	if _, err := m.AttachBridge(ctx, key, mac, "br-lan"); err == nil || !strings.Contains(err.Error(), `bridge "br-lan" does not exist`) {
		t.Fatalf("missing bridge: %v", err)
	}
	host := func(args ...string) {
		t.Helper()
		if out, err := m.run(ctx, nil, args...); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	host("ip", "link", "add", "br-lan", "type", "bridge")
	host("ip", "addr", "add", "192.168.77.1/24", "dev", "br-lan")
	host("ip", "link", "set", "br-lan", "up")
	att, err := m.AttachBridge(ctx, key, mac, "br-lan")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Release(context.Background(), "u") })
	if att.Bridge != "br-lan" || !strings.HasPrefix(att.Tap, "vx") {
		t.Fatalf("attachment %+v", att)
	}
	// The "tap": a veth named as libvirt would name it, joined to the bridge.
	host("ip", "link", "add", att.Tap, "type", "veth", "peer", "name", "g0", "netns", guestNS)
	host("ip", "link", "set", att.Tap, "master", "br-lan", "up")
	guest := func(args ...string) error {
		out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", guestNS}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %w: %s", args, err, out)
		}
		return nil
	}
	for _, args := range [][]string{
		{"ip", "link", "set", "g0", "address", mac},
		{"ip", "addr", "add", "192.168.77.2/24", "dev", "g0"},
		{"ip", "link", "set", "g0", "up"},
	} {
		if err := guest(args...); err != nil {
			t.Fatal(err)
		}
	}
	ping := func() error { return guest("busybox", "ping", "-c2", "-W2", "192.168.77.1") }
	readdress := func(ip string) {
		t.Helper()
		host("ip", "neigh", "flush", "dev", "br-lan")
		if err := guest("ip", "addr", "flush", "dev", "g0"); err != nil {
			t.Fatal(err)
		}
		if err := guest("ip", "addr", "add", ip+"/24", "dev", "g0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := ping(); err != nil {
		t.Fatalf("from its own MAC and first address: %v", err)
	}
	// The first address is learned; another one is not the guest's.
	readdress("192.168.77.3")
	if err := ping(); err == nil {
		t.Fatal("the guest reached the bridge from a second address")
	}
	// A reload of the rules (another VM's port, an agent restart) keeps
	// what was learned.
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(nftList(t, m), `"`+att.Tap+`" . 192.168.77.2`) {
		t.Fatalf("the learned address is gone after a reload:\n%s", nftList(t, m))
	}
	if err := ping(); err == nil {
		t.Fatal("after a reload the guest reached the bridge from a second address")
	}
	readdress("192.168.77.2")
	if err := ping(); err != nil {
		t.Fatalf("from its learned address after a reload: %v", err)
	}

	// A spoofed MAC (with a fresh neighbour entry on the host, which would
	// otherwise answer the old MAC).
	host("ip", "neigh", "flush", "dev", "br-lan")
	for _, args := range [][]string{
		{"ip", "link", "set", "g0", "down"},
		{"ip", "link", "set", "g0", "address", "52:54:00:66:66:66"},
		{"ip", "link", "set", "g0", "up"},
	} {
		if err := guest(args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := ping(); err == nil {
		t.Fatal("a spoofed MAC reached the bridge")
	}

	if err := m.Release(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	if left := nftList(t, m); strings.Contains(left, "bridged_mac") {
		t.Fatalf("rules left after the port went:\n%s", left)
	}
}
