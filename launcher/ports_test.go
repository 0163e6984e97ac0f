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
	"maps"
	"net"
	"path/filepath"
	"reflect"
	"testing"
)

func TestPortsAreKeptUnlessTaken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ports.json")
	hypervisors := []string{"hv-1", "hv-2"}
	first, err := ensurePorts(path, hypervisors, replicaCounts{})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Agents) != 2 {
		t.Fatalf("agent ports %v, want one per hypervisor", first.Agents)
	}
	seen := map[int]bool{}
	for _, p := range first.all(hypervisors, replicaCounts{}) {
		if *p == 0 || seen[*p] {
			t.Fatalf("ports not distinct and set: %+v", first)
		}
		seen[*p] = true
	}

	again, err := ensurePorts(path, hypervisors, replicaCounts{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, first) {
		t.Errorf("ports changed between starts: %+v, then %+v", first, again)
	}

	// Something else took kube-apiserver's port meanwhile.
	l, err := listenLoopback(first.KubeAPIServer)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	moved, err := ensurePorts(path, hypervisors, replicaCounts{})
	if err != nil {
		t.Fatal(err)
	}
	if moved.KubeAPIServer == first.KubeAPIServer {
		t.Error("kept a port that is now taken")
	}
	if moved.EtcdClient != first.EtcdClient || moved.EtcdPeer != first.EtcdPeer || !maps.Equal(moved.Agents, first.Agents) {
		t.Errorf("free ports changed too: %+v, then %+v", first, moved)
	}

	// A third hypervisor gets a port of its own; the others keep theirs.
	more, err := ensurePorts(path, append(hypervisors, "hv-3"), replicaCounts{})
	if err != nil {
		t.Fatal(err)
	}
	if more.Agents["hv-1"] != first.Agents["hv-1"] || more.Agents["hv-2"] != first.Agents["hv-2"] || more.Agents["hv-3"] == 0 {
		t.Errorf("agent ports %v after adding hv-3, were %v", more.Agents, first.Agents)
	}
	if _, err := loadPorts(path, []string{"hv-4"}, replicaCounts{}); err == nil {
		t.Error("loadPorts took a file without the port of hv-4's agent")
	}
}

func TestPortsFileUnreadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ports.json")
	writeFile(t, path, "{not json")
	ports, err := ensurePorts(path, nil, replicaCounts{})
	if err != nil {
		t.Fatal(err)
	}
	if ports.KubeAPIServer == 0 {
		t.Error("no port chosen after an unreadable ports file")
	}
}

// TestNewPortsAreOutsideTheEphemeralRange: a port chosen for a component
// cannot be the kernel's next answer to anyone's bind to port 0 (which
// once gave the embedded etcd an agent's port) or outgoing connection.
func TestNewPortsAreOutsideTheEphemeralRange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ports.json")
	hypervisors := []string{"hv-1", "hv-2", "hv-3"}
	ports, err := ensurePorts(path, hypervisors, replicaCounts{etcdMembers: 3, apiServers: 2})
	if err != nil {
		t.Fatal(err)
	}
	eph := ephemeralPorts()
	for _, p := range ports.all(hypervisors, replicaCounts{etcdMembers: 3, apiServers: 2}) {
		if *p < freeFrom || *p > freeTo || (*p >= eph[0] && *p <= eph[1]) {
			t.Errorf("port %d is outside %d-%d or in the ephemeral range %v", *p, freeFrom, freeTo, eph)
		}
	}
}

func TestListenFreeSkipsTheEphemeralRange(t *testing.T) {
	probe, err := listenLoopback(freeTo)
	if err != nil {
		t.Skipf("port %d is taken on this machine: %v", freeTo, err)
	}
	probe.Close()
	// An ephemeral range that leaves only the top port of the range.
	l, err := listenFree([2]int{0, freeTo - 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if port := l.Addr().(*net.TCPAddr).Port; port != freeTo {
		t.Errorf("got port %d, want %d, the only one outside the ephemeral range", port, freeTo)
	}
}
