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

package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"

	"github.com/vessel-vm/vessel/launcher/internal/atomicfile"
)

// Ports are the loopback ports of one control plane. They are chosen free
// on the first start and then kept in the state directory, so that a
// kubeconfig or a shell with KUBECONFIG set keeps working across Down and
// Start, and several state directories (parallel tests) never collide.
type Ports struct {
	EtcdClient      int `json:"etcdClient"`
	EtcdPeer        int `json:"etcdPeer"`
	KubeAPIServer   int `json:"kubeAPIServer"`
	VesselAPIServer int `json:"vesselAPIServer"`
	ControllerMgr   int `json:"kubeControllerManager"`
	// Agents are the agents' console stream servers, by hypervisor.
	Agents map[string]int `json:"agents,omitempty"`
	// AgentMetrics are the agents' Prometheus endpoints (HTTPS, delegated
	// authentication and authorization), by hypervisor.
	AgentMetrics map[string]int `json:"agentMetrics,omitempty"`
	// VesselEtcd are the members of the vessel etcd cluster (with
	// Options.EtcdMembers; the embedded etcd needs none).
	VesselEtcd []EtcdMemberPorts `json:"vesselEtcd,omitempty"`
	// VesselAPIServerReplicas are the secure ports of the vessel-apiservers
	// after the first (with Options.APIServers > 1), whose port is
	// VesselAPIServer.
	VesselAPIServerReplicas []int `json:"vesselAPIServerReplicas,omitempty"`
}

// EtcdMemberPorts are one etcd member's client and peer ports.
type EtcdMemberPorts struct {
	Client int `json:"client"`
	Peer   int `json:"peer"`
}

// replicaCounts size the replicated parts of the control plane.
type replicaCounts struct {
	etcdMembers int // 0: embedded etcd
	apiServers  int // 0 counts as 1
}

// VesselAPIServerPorts are the secure ports of every vessel-apiserver, the
// first one's first.
func (p *Ports) VesselAPIServerPorts() []int {
	return append([]int{p.VesselAPIServer}, p.VesselAPIServerReplicas...)
}

// all returns the ports to keep: the control plane's, then the agents'
// stream ports and the agents' metrics ports of hypervisors, in their
// order (the maps have them all, made if need be).
func (p *Ports) all(hypervisors []string, replicas replicaCounts) []*int {
	ports := []*int{&p.EtcdClient, &p.EtcdPeer, &p.KubeAPIServer, &p.VesselAPIServer, &p.ControllerMgr}
	p.VesselEtcd = resize(p.VesselEtcd, replicas.etcdMembers)
	for i := range p.VesselEtcd {
		ports = append(ports, &p.VesselEtcd[i].Client, &p.VesselEtcd[i].Peer)
	}
	p.VesselAPIServerReplicas = resize(p.VesselAPIServerReplicas, max(replicas.apiServers-1, 0))
	for i := range p.VesselAPIServerReplicas {
		ports = append(ports, &p.VesselAPIServerReplicas[i])
	}
	if p.Agents == nil {
		p.Agents = map[string]int{}
	}
	if p.AgentMetrics == nil {
		p.AgentMetrics = map[string]int{}
	}
	for _, m := range []map[string]int{p.Agents, p.AgentMetrics} {
		for _, hv := range hypervisors {
			port := new(int)
			*port = m[hv]
			ports = append(ports, port)
		}
	}
	return ports
}

// resize returns s with n elements, keeping those it has.
func resize[T any](s []T, n int) []T {
	if len(s) >= n {
		return s[:n]
	}
	return append(s, make([]T, n-len(s))...)
}

// setAgents stores back the agents' ports all returned.
func (p *Ports) setAgents(hypervisors []string, ports []*int) {
	n := len(hypervisors)
	agents, metrics := ports[len(ports)-2*n:len(ports)-n], ports[len(ports)-n:]
	for i, hv := range hypervisors {
		p.Agents[hv] = *agents[i]
		p.AgentMetrics[hv] = *metrics[i]
	}
}

// ensurePorts loads the saved ports and replaces any that is unset or now
// taken by something else; the agents of hypervisors get one each.
func ensurePorts(path string, hypervisors []string, replicas replicaCounts) (Ports, error) {
	var ports Ports
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &ports); err != nil {
			ports = Ports{} // unreadable: choose afresh
		}
	case !errors.Is(err, os.ErrNotExist):
		return Ports{}, fmt.Errorf("read saved ports: %w", err)
	}

	// Every listener stays open until all ports are chosen, so that the
	// kernel cannot hand the same port out twice.
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	all := ports.all(hypervisors, replicas)
	eph := ephemeralPorts()
	for _, port := range all {
		if *port != 0 {
			if l, err := listenLoopback(*port); err == nil {
				held = append(held, l)
				continue
			}
		}
		l, err := listenFree(eph)
		if err != nil {
			return Ports{}, err
		}
		held = append(held, l)
		*port = l.Addr().(*net.TCPAddr).Port
	}
	ports.setAgents(hypervisors, all)

	data, err = json.MarshalIndent(ports, "", "  ")
	if err != nil {
		return Ports{}, fmt.Errorf("encode ports: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o644); err != nil {
		return Ports{}, fmt.Errorf("save ports: %w", err)
	}
	return ports, nil
}

func listenLoopback(port int) (net.Listener, error) {
	return net.Listen("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
}

// New ports are chosen in [freeFrom, freeTo], outside the kernel's
// ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default)
// and Kubernetes' NodePort range (30000-32767). A port the kernel handed
// out for port 0 is free again once its listener here closes, and from
// then until its component binds it, any process's bind to port 0 or
// outgoing connection can take it: in one CI run the vessel-apiserver's
// embedded etcd, listening on port 0, got an agent's stream port that way.
// Ports outside the range are taken only by someone asking for them.
const freeFrom, freeTo = 20000, 29999

// listenFree listens on a free loopback port in [freeFrom, freeTo] that is
// not in the ephemeral range eph, starting at a random one so that state
// directories chosen at the same time rarely pick the same; the kernel
// chooses when none is free there.
func listenFree(eph [2]int) (net.Listener, error) {
	n := freeTo - freeFrom + 1
	start := rand.IntN(n)
	for i := range n {
		port := freeFrom + (start+i)%n
		if port >= eph[0] && port <= eph[1] {
			continue
		}
		if l, err := listenLoopback(port); err == nil {
			return l, nil
		}
	}
	l, err := listenLoopback(0)
	if err != nil {
		return nil, fmt.Errorf("find a free loopback port: %w", err)
	}
	return l, nil
}

// FreeLoopbackPort is a loopback port free now and outside the kernel's
// ephemeral range, for a program about to be started on it: no bind to
// port 0 or outgoing connection meanwhile can take it.
func FreeLoopbackPort() (int, error) {
	l, err := listenFree(ephemeralPorts())
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralPorts is the kernel's range of ports for port 0 and outgoing
// connections, Linux's default if it cannot be read.
func ephemeralPorts() [2]int {
	eph := [2]int{32768, 60999}
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return eph
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(data), &lo, &hi); err == nil && lo <= hi {
		eph = [2]int{lo, hi}
	}
	return eph
}

// loadPorts reads the saved ports as they are, for a supervisor that
// adopts components already listening on them.
func loadPorts(path string, hypervisors []string, replicas replicaCounts) (Ports, error) {
	var ports Ports
	data, err := os.ReadFile(path)
	if err != nil {
		return Ports{}, fmt.Errorf("read saved ports: %w", err)
	}
	if err := json.Unmarshal(data, &ports); err != nil {
		return Ports{}, fmt.Errorf("read saved ports %s: %w", path, err)
	}
	if len(ports.VesselEtcd) != replicas.etcdMembers || len(ports.VesselAPIServerReplicas) != max(replicas.apiServers-1, 0) {
		return Ports{}, fmt.Errorf("saved ports %s are for another number of etcd members or vessel-apiservers: %+v", path, ports)
	}
	for _, port := range ports.all(hypervisors, replicas) {
		if *port == 0 {
			return Ports{}, fmt.Errorf("saved ports %s lack one: %+v", path, ports)
		}
	}
	return ports, nil
}
