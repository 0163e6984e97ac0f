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
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
)

// state is what the agent set up, persisted so a restarted agent applies
// the same again: which namespace has which subnet, which guest port has
// which MAC and address.
type state struct {
	// Networks by tenant namespace.
	Networks map[string]*tenantNetwork `json:"networks"`
	// BridgePorts are the guest interfaces on operator bridges (type
	// Bridge), by port key: not the managed network's, but filtered by
	// its rules all the same.
	BridgePorts map[string]BridgePort `json:"bridgePorts,omitempty"`
	// learned are the IPv4 addresses the rules learned for bridge ports,
	// by tap: read back from the kernel before the ruleset is replaced,
	// so a reload never lets a guest pick another. Not persisted: a
	// restarted guest (its tap made anew) learns again.
	learned map[string]netip.Addr
}

// BridgePort is one guest interface on a bridge the operator allows. Its
// address comes from whatever serves that bridge: the rules pin its MAC,
// and the first IPv4 address it uses (as libvirt's clean-traffic filter
// learns it).
type BridgePort struct {
	Tap    string `json:"tap"`
	MAC    string `json:"mac"`
	Bridge string `json:"bridge"`
}

// tenantNetwork is one namespace's bridge, subnet and ports.
type tenantNetwork struct {
	// Index picks the bridge name and the /24 in the pool.
	Index int `json:"index"`
	// Ports by port key (VM UID / interface name).
	Ports map[string]Port `json:"ports"`
}

// Port is one guest interface on the managed network.
type Port struct {
	// Tap is the host side of the guest's NIC, named by the agent so its
	// rules can name it before libvirt creates it.
	Tap string `json:"tap"`
	MAC string `json:"mac"`
	// IP is the address reserved for the MAC in dnsmasq, the only one the
	// guest may use.
	IP netip.Addr `json:"ip"`
	// Carried says the guest came by live migration with IP, leased by
	// the source hypervisor's DHCP server for good: it does not ask this
	// one, so no lease here says which address it has.
	Carried bool `json:"carried,omitempty"`
}

// Attachment is what the domain needs to join the managed network.
type Attachment struct {
	Bridge string
	Tap    string
	IP     netip.Addr
}

// PortKey names a VM's interface.
func PortKey(uid, nic string) string { return uid + "/" + nic }

// tapName derives the tap of a port from its key: at most 15 bytes
// (IFNAMSIZ), never libvirt's own "vnet" prefix.
func tapName(key string) string { return portName(tapPrefix, key) }

// bridgeTapName is tapName for ports on operator bridges, whose prefix
// sends them to their own rules.
func bridgeTapName(key string) string { return portName(bridgeTapPrefix, key) }

func portName(prefix, key string) string {
	h := sha256.Sum256([]byte(key))
	return fmt.Sprintf("%s%x", prefix, h[:5])
}

func bridgeName(index int) string { return fmt.Sprintf("vb%d", index) }

// indexOf is the index of the /24 of pool that holds a, or -1.
func indexOf(pool netip.Prefix, a netip.Addr) int {
	if !a.Is4() || !pool.Masked().Contains(a) || pool.Bits() > 24 {
		return -1
	}
	base, x := pool.Masked().Addr().As4(), a.As4()
	v := func(b [4]byte) uint32 { return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) }
	return int((v(x) - v(base)) >> 8)
}

// subnet is the /24 of network index in pool (a /16 or larger).
func subnet(pool netip.Prefix, index int) (netip.Prefix, error) {
	if pool.Bits() > 24 || !pool.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("pool %s: need an IPv4 prefix of /24 or larger", pool)
	}
	if index >= 1<<(24-pool.Bits()) {
		return netip.Prefix{}, fmt.Errorf("pool %s has no room for network %d", pool, index)
	}
	b := pool.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(index) << 8
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), 0}), 24), nil
}

// gateway is the bridge's own address: .1 of its subnet.
func gateway(p netip.Prefix) netip.Addr { return p.Addr().Next() }

// allocateNetwork returns the namespace's network, creating it with
// index prefer when that is free (prefer < 0: none), else with the lowest
// free index.
func (s *state) allocateNetwork(namespace string, pool netip.Prefix, prefer int) (*tenantNetwork, error) {
	if n := s.Networks[namespace]; n != nil {
		return n, nil
	}
	used := map[int]bool{}
	for _, n := range s.Networks {
		used[n.Index] = true
	}
	i := 0
	for used[i] {
		i++
	}
	if prefer >= 0 && !used[prefer] {
		i = prefer
	}
	if _, err := subnet(pool, i); err != nil {
		return nil, err
	}
	n := &tenantNetwork{Index: i, Ports: map[string]Port{}}
	if s.Networks == nil {
		s.Networks = map[string]*tenantNetwork{}
	}
	if s.BridgePorts == nil {
		s.BridgePorts = map[string]BridgePort{}
	}
	s.Networks[namespace] = n
	return n, nil
}

// allocatePort returns the port of key, creating it with address prefer
// when that is free in sub (an invalid prefer: none), else with the
// lowest free address from .2 up. A port whose MAC changed keeps its
// address.
func (n *tenantNetwork) allocatePort(key, mac string, sub netip.Prefix, prefer netip.Addr) (Port, error) {
	if p, ok := n.Ports[key]; ok {
		p.MAC = mac
		n.Ports[key] = p
		return p, nil
	}
	used := map[netip.Addr]bool{}
	for _, p := range n.Ports {
		used[p.IP] = true
	}
	if prefer.IsValid() && sub.Contains(prefer) && prefer != sub.Addr() && prefer != gateway(sub) && sub.Contains(prefer.Next()) && !used[prefer] {
		p := Port{Tap: tapName(key), MAC: mac, IP: prefer}
		n.Ports[key] = p
		return p, nil
	}
	for a := gateway(sub).Next(); sub.Contains(a); a = a.Next() {
		if used[a] || !sub.Contains(a.Next()) { // never the broadcast address
			continue
		}
		p := Port{Tap: tapName(key), MAC: mac, IP: a}
		n.Ports[key] = p
		return p, nil
	}
	return Port{}, fmt.Errorf("subnet %s is full", sub)
}

// namespaces lists the networks' namespaces in index order, for output
// that does not change between runs.
func (s *state) namespaces() []string {
	var out []string
	for ns := range s.Networks {
		out = append(out, ns)
	}
	sort.Slice(out, func(i, j int) bool { return s.Networks[out[i]].Index < s.Networks[out[j]].Index })
	return out
}

func sortedPorts(n *tenantNetwork) []Port {
	var out []Port
	for _, p := range n.Ports {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tap < out[j].Tap })
	return out
}

func sortedBridgePorts(s *state) []BridgePort {
	var out []BridgePort
	for _, p := range s.BridgePorts {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tap < out[j].Tap })
	return out
}

func loadState(path string) (*state, error) {
	s := &state{Networks: map[string]*tenantNetwork{}, BridgePorts: map[string]BridgePort{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read network state: %w", err)
	}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("parse network state %s: %w", path, err)
	}
	if s.Networks == nil {
		s.Networks = map[string]*tenantNetwork{}
	}
	if s.BridgePorts == nil {
		s.BridgePorts = map[string]BridgePort{}
	}
	for _, n := range s.Networks {
		if n.Ports == nil {
			n.Ports = map[string]Port{}
		}
	}
	return s, nil
}

// save writes the state atomically: a crash leaves the old or the new one.
func (s *state) save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode network state: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write network state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write network state: %w", err)
	}
	return nil
}
