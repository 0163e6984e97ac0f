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
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"k8s.io/klog/v2"
)

// DefaultPool is where the namespaces' /24 subnets come from.
const DefaultPool = "10.200.0.0/16"

// Config says where the managed network lives.
type Config struct {
	// Netns is the path of the network namespace (see NetnsPath); empty:
	// the agent's own.
	Netns string
	// Dir holds the state file and each network's dnsmasq files.
	Dir string
	// Pool is split into one /24 per namespace.
	Pool netip.Prefix
	// AllowedBridges are the operator's bridges (in Netns) guests may
	// join with Bridge interfaces; none when empty.
	AllowedBridges []string
}

// Manager sets up and tears down the managed network. Its methods are
// safe to call from several VM workers at once.
type Manager struct {
	cfg Config
	run runner

	mu    sync.Mutex
	state *state
}

// New loads what an earlier agent set up; Start applies it.
func New(cfg Config) (*Manager, error) {
	if !cfg.Pool.IsValid() {
		cfg.Pool = netip.MustParsePrefix(DefaultPool)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("network state directory: %w", err)
	}
	s, err := loadState(filepath.Join(cfg.Dir, "state.json"))
	if err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, run: nsenterRunner(cfg.Netns), state: s}, nil
}

// Start (re)applies everything: forwarding, every bridge, its dnsmasq
// (re-adopted when it still runs) and the ruleset. Idempotent.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.run(ctx, nil, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return fmt.Errorf("managed network: enable forwarding: %w", err)
	}
	for _, ns := range m.state.namespaces() {
		if err := m.ensureNetwork(ctx, m.state.Networks[ns]); err != nil {
			return fmt.Errorf("managed network of namespace %s: %w", ns, err)
		}
	}
	return m.applyRules(ctx)
}

// Attach reserves a port for the VM interface key in namespace's network,
// setting the network up if it is the first, and returns where the
// domain's interface goes.
func (m *Manager) Attach(ctx context.Context, namespace, key, mac string) (Attachment, error) {
	return m.attach(ctx, namespace, key, mac, netip.Addr{})
}

// AttachCarried is Attach for a guest arriving by live migration with
// address ip (leased by its source's DHCP server, for good): the port
// keeps ip when namespace's network here has, or can still get, the /24
// it is in and ip is free there. Attachment.IP says whether it did; if
// not, the guest must ask DHCP again to be reachable.
func (m *Manager) AttachCarried(ctx context.Context, namespace, key, mac string, ip netip.Addr) (Attachment, error) {
	return m.attach(ctx, namespace, key, mac, ip)
}

func (m *Manager) attach(ctx context.Context, namespace, key, mac string, prefer netip.Addr) (Attachment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.state.allocateNetwork(namespace, m.cfg.Pool, indexOf(m.cfg.Pool, prefer))
	if err != nil {
		return Attachment{}, fmt.Errorf("managed network of namespace %s: %w", namespace, err)
	}
	sub, _ := subnet(m.cfg.Pool, n.Index)
	before, had := n.Ports[key]
	p, err := n.allocatePort(key, mac, sub, prefer)
	if err != nil {
		return Attachment{}, fmt.Errorf("managed network of namespace %s: %w", namespace, err)
	}
	if !had && prefer.IsValid() && p.IP == prefer {
		p.Carried = true
		n.Ports[key] = p
	}
	if err := m.state.save(m.statePath()); err != nil {
		return Attachment{}, err
	}
	if err := m.ensureNetwork(ctx, n); err != nil {
		return Attachment{}, fmt.Errorf("managed network of namespace %s: %w", namespace, err)
	}
	if !had || before != p {
		if err := m.applyRules(ctx); err != nil {
			return Attachment{}, err
		}
	}
	return Attachment{Bridge: bridgeName(n.Index), Tap: p.Tap, IP: p.IP}, nil
}

// ErrBridgeNotAllowed says a Bridge interface names a bridge this
// hypervisor's agent does not allow.
var ErrBridgeNotAllowed = errors.New("not allowed on this hypervisor")

// AttachBridge reserves a port for the VM interface key on the operator's
// bridge, which must be allow-listed here and exist, and returns the tap
// the domain's interface must use: the rules let that tap send from mac
// only.
func (m *Manager) AttachBridge(ctx context.Context, key, mac, bridge string) (Attachment, error) {
	if !slices.Contains(m.cfg.AllowedBridges, bridge) {
		if len(m.cfg.AllowedBridges) == 0 {
			return Attachment{}, fmt.Errorf("%w: bridge %q: its agent allows no bridges (vessel-agent --allowed-bridges)", ErrBridgeNotAllowed, bridge)
		}
		return Attachment{}, fmt.Errorf("%w: bridge %q: its agent allows %s (vessel-agent --allowed-bridges)", ErrBridgeNotAllowed, bridge, strings.Join(m.cfg.AllowedBridges, ", "))
	}
	out, err := m.run(ctx, nil, "ip", "-o", "link", "show", "type", "bridge")
	if err != nil {
		return Attachment{}, fmt.Errorf("list the hypervisor's bridges: %w", err)
	}
	if !slices.Contains(linkNames(out), bridge) {
		return Attachment{}, fmt.Errorf("bridge %q does not exist on this hypervisor", bridge)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := BridgePort{Tap: bridgeTapName(key), MAC: strings.ToLower(mac), Bridge: bridge}
	if before, had := m.state.BridgePorts[key]; !had || before != p {
		m.state.BridgePorts[key] = p
		if err := m.state.save(m.statePath()); err != nil {
			return Attachment{}, err
		}
		if err := m.applyRules(ctx); err != nil {
			return Attachment{}, err
		}
	}
	return Attachment{Bridge: bridge, Tap: p.Tap}, nil
}

// ValidateOperatorBridge checks a name for --allowed-bridges: a Linux
// interface name, and not one of the managed network's own bridges or
// taps, which would put a guest on another namespace's network.
func ValidateOperatorBridge(name string) error {
	switch {
	case name == "" || len(name) > 15 || strings.ContainsAny(name, "/: \t\n") || name == "." || name == "..":
		return fmt.Errorf("%q is not a Linux interface name (1-15 bytes, no '/', ':' or blanks)", name)
	case strings.HasPrefix(name, bridgePrefix) || strings.HasPrefix(name, tapPrefix) || strings.HasPrefix(name, bridgeTapPrefix):
		return fmt.Errorf("%q: names starting with %q, %q or %q are the managed network's own bridges and guest ports", name, bridgePrefix, tapPrefix, bridgeTapPrefix)
	}
	return nil
}

// linkNames are the interface names in `ip -o link show` output
// ("7: br0: <BROADCAST,...> ..." or "8: veth0@if9: ...").
func linkNames(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		names = append(names, name)
	}
	return names
}

// Release gives up every port of the VM uid; a network left without
// ports is torn down (bridge, dnsmasq, files, rules).
func (m *Manager) Release(ctx context.Context, uid string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := false
	var errs []error
	for key := range m.state.BridgePorts {
		if strings.HasPrefix(key, uid+"/") {
			delete(m.state.BridgePorts, key)
			changed = true
		}
	}
	for _, ns := range m.state.namespaces() {
		n := m.state.Networks[ns]
		touched := false
		for key := range n.Ports {
			if strings.HasPrefix(key, uid+"/") {
				delete(n.Ports, key)
				touched = true
			}
		}
		if !touched {
			continue
		}
		changed = true
		if len(n.Ports) == 0 {
			errs = append(errs, m.removeNetwork(ctx, n))
			delete(m.state.Networks, ns)
		} else {
			errs = append(errs, m.writeHosts(n))
		}
	}
	if !changed {
		return nil
	}
	errs = append(errs, m.state.save(m.statePath()), m.applyRules(ctx))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release the managed network ports of %s: %w", uid, err)
	}
	return nil
}

// Remove tears the whole managed network down: every bridge, dnsmasq and
// rule, and the state. For tests and for a node taken out of service; the
// guests on it lose their network.
func (m *Manager) Remove(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, ns := range m.state.namespaces() {
		errs = append(errs, m.removeNetwork(ctx, m.state.Networks[ns]))
		delete(m.state.Networks, ns)
	}
	errs = append(errs, m.applyRules(ctx), m.state.save(m.statePath()))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove the managed network: %w", err)
	}
	return nil
}

// Addresses are the DHCP leases the namespace's dnsmasq handed to mac.
func (m *Manager) Addresses(namespace, mac string) []netip.Addr {
	m.mu.Lock()
	n := m.state.Networks[namespace]
	m.mu.Unlock()
	if n == nil {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(m.netDir(n), "leases"))
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, l := range parseLeases(string(data)) {
		if l.MAC == strings.ToLower(mac) {
			out = append(out, l.IP)
		}
	}
	if len(out) == 0 {
		// A guest that came by live migration holds its source's lease.
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, p := range n.Ports {
			if p.Carried && strings.EqualFold(p.MAC, mac) {
				out = append(out, p.IP)
			}
		}
	}
	return out
}

// learnedAddresses reads the addresses the bridge ports learned from the
// kernel's set (none before the first ruleset).
func (m *Manager) learnedAddresses(ctx context.Context) map[string]netip.Addr {
	out, err := m.run(ctx, nil, "nft", "-j", "list", "set", "bridge", "vessel", learnedSet)
	if err != nil {
		return nil // no table yet
	}
	learned, err := parseLearned(out)
	if err != nil {
		klog.FromContext(ctx).Error(err, "Cannot read the addresses guests on operator bridges learned; they learn again")
	}
	return learned
}

// parseLearned reads `nft -j list set` output of the learned set.
func parseLearned(out string) (map[string]netip.Addr, error) {
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []struct {
					Concat []string `json:"concat"`
				} `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("parse the learned addresses: %w", err)
	}
	learned := map[string]netip.Addr{}
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, e := range o.Set.Elem {
			if len(e.Concat) != 2 {
				continue
			}
			if ip, err := netip.ParseAddr(e.Concat[1]); err == nil {
				learned[e.Concat[0]] = ip
			}
		}
	}
	return learned, nil
}

// Ruleset is the nftables script the manager applies (for tests and
// debugging).
func (m *Manager) Ruleset() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return ruleset(m.state, m.cfg.Pool)
}

func (m *Manager) statePath() string { return filepath.Join(m.cfg.Dir, "state.json") }

func (m *Manager) netDir(n *tenantNetwork) string {
	return filepath.Join(m.cfg.Dir, bridgeName(n.Index))
}

// ensureNetwork creates n's bridge with its gateway address, writes its
// dnsmasq files and makes sure its dnsmasq runs and has read them.
func (m *Manager) ensureNetwork(ctx context.Context, n *tenantNetwork) error {
	br := bridgeName(n.Index)
	sub, err := subnet(m.cfg.Pool, n.Index)
	if err != nil {
		return err
	}
	if _, err := m.run(ctx, nil, "ip", "link", "show", "dev", br); err != nil {
		if _, err := m.run(ctx, nil, "ip", "link", "add", br, "type", "bridge"); err != nil {
			return fmt.Errorf("create bridge %s: %w", br, err)
		}
	}
	gw := netip.PrefixFrom(gateway(sub), sub.Bits())
	for _, argv := range [][]string{
		{"ip", "address", "replace", gw.String(), "dev", br},
		{"ip", "link", "set", br, "up"},
	} {
		if _, err := m.run(ctx, nil, argv...); err != nil {
			return fmt.Errorf("set up bridge %s: %w", br, err)
		}
	}
	dir := m.netDir(n)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("dnsmasq directory: %w", err)
	}
	conf := filepath.Join(dir, "dnsmasq.conf")
	if err := os.WriteFile(conf, []byte(dnsmasqConfig(br, sub, dir)), 0o600); err != nil {
		return fmt.Errorf("write dnsmasq configuration: %w", err)
	}
	if err := m.writeHosts(n); err != nil {
		return err
	}
	if pid := m.dnsmasqPID(n); pid > 0 {
		// Re-adopted (or already ours): it re-reads the hosts file.
		return nil
	}
	if _, err := m.run(ctx, nil, "dnsmasq", "--conf-file="+conf); err != nil {
		return fmt.Errorf("start dnsmasq on %s: %w", br, err)
	}
	return nil
}

// writeHosts rewrites n's DHCP hosts file and tells its dnsmasq.
func (m *Manager) writeHosts(n *tenantNetwork) error {
	path := filepath.Join(m.netDir(n), "hosts")
	if err := os.WriteFile(path, []byte(dnsmasqHosts(n)), 0o600); err != nil {
		return fmt.Errorf("write dnsmasq hosts: %w", err)
	}
	if pid := m.dnsmasqPID(n); pid > 0 {
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("reload dnsmasq %d: %w", pid, err)
		}
	}
	return nil
}

// dnsmasqPID is the pid of n's running dnsmasq, or 0. The pid file is
// only believed when that process is a dnsmasq with n's configuration.
func (m *Manager) dnsmasqPID(n *tenantNetwork) int {
	dir := m.netDir(n)
	b, err := os.ReadFile(filepath.Join(dir, "dnsmasq.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "--conf-file="+filepath.Join(dir, "dnsmasq.conf")) {
		return 0
	}
	return pid
}

// removeNetwork stops n's dnsmasq and deletes its bridge and files.
func (m *Manager) removeNetwork(ctx context.Context, n *tenantNetwork) error {
	var errs []error
	if pid := m.dnsmasqPID(n); pid > 0 {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			errs = append(errs, fmt.Errorf("stop dnsmasq %d: %w", pid, err))
		}
	}
	br := bridgeName(n.Index)
	if _, err := m.run(ctx, nil, "ip", "link", "show", "dev", br); err == nil {
		if _, err := m.run(ctx, nil, "ip", "link", "delete", br); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge %s: %w", br, err))
		}
	}
	errs = append(errs, os.RemoveAll(m.netDir(n)))
	return errors.Join(errs...)
}

func (m *Manager) applyRules(ctx context.Context) error {
	m.state.learned = m.learnedAddresses(ctx)
	if _, err := m.run(ctx, strings.NewReader(ruleset(m.state, m.cfg.Pool)), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("apply the managed network's nftables rules: %w", err)
	}
	return nil
}
