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
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/uuid"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/vessel-vm/vessel/launcher/internal/atomicfile"
	"github.com/vessel-vm/vessel/launcher/libvirtd"
)

// The fabric between a control plane's hypervisors exists only inside the
// network namespaces the launcher creates, so its subnet collides with
// nothing on the machine, and every control plane uses the same one, each
// on a fabric of its own. Hypervisor i (from 1) has the address
// .(fabricHostOffset+i); the ones below are kept for the fabric itself.
var fabricSubnet = netip.MustParsePrefix("10.250.0.0/24")

const (
	fabricHostOffset = 10
	maxHypervisors   = 200
	fabricBridge     = "fabric"
)

// Hypervisor is one hypervisor of a control plane: a vessel-agent
// registered as the Hypervisor Name, driving a libvirtd of its own (a
// libvirtd.Host) in the network namespace Netns.
type Hypervisor struct {
	Name string `json:"name"`
	// Index numbers the hypervisors of a state directory from 1, in the
	// order they were first started; it picks their namespace's name,
	// address and fabric port.
	Index int `json:"index"`
	// Netns is the named network namespace of the hypervisor's libvirtd
	// and guests (`ip netns exec NETNS ...`).
	Netns string `json:"netns"`
	// Address is the hypervisor's address on the fabric (link
	// libvirtd.FabricLink in Netns), for traffic between hypervisors.
	Address netip.Prefix `json:"address"`
	// HostUUID is its libvirtd's host_uuid.
	HostUUID string `json:"hostUUID"`
	// Dir is <state>/hypervisors/<name>: the libvirt host's directories
	// (see package libvirtd) and the agent's state in agent/.
	Dir string `json:"-"`
}

// Socket is the hypervisor's libvirtd socket, which its agent uses.
func (h Hypervisor) Socket() string { return h.LibvirtHost().Socket() }

// URI is the libvirt connection URI of the hypervisor, for virsh -c.
func (h Hypervisor) URI() string { return h.LibvirtHost().URI() }

// AgentStateDir is the agent's --state-dir: its image cache and a
// directory per VM (disks, console log).
func (h Hypervisor) AgentStateDir() string { return filepath.Join(h.Dir, "agent") }

// LibvirtHost is the private libvirt host the hypervisor's agent drives.
func (h Hypervisor) LibvirtHost() libvirtd.Host {
	return libvirtd.Host{
		Name:             h.Name,
		Dir:              h.Dir,
		Netns:            h.Netns,
		UUID:             h.HostUUID,
		CapabilitiesSeed: libvirtd.DefaultCapabilitiesSeed,
	}
}

// hypervisorPlan is what the launcher assigned to the hypervisors of a
// state directory, kept in hypervisors.json so that they keep their
// namespaces, addresses and host UUIDs across restarts. It lists every
// hypervisor ever started there, whether it runs now or not, so that
// Destroy finds them all.
type hypervisorPlan struct {
	// ID, random and chosen once, makes the names of the state
	// directory's network namespaces unique on the machine:
	// vessel-<ID>-<index> for hypervisors, vessel-<ID>-fabric.
	ID          string       `json:"id"`
	FabricNetns string       `json:"fabricNetns"`
	Subnet      netip.Prefix `json:"subnet"`
	Hypervisors []Hypervisor `json:"hypervisors"`
}

func (p *hypervisorPlan) fabric() libvirtd.Fabric {
	return libvirtd.Fabric{Netns: p.FabricNetns, Bridge: fabricBridge}
}

// fabricPort names the hypervisor's end of its pair in the fabric.
func fabricPort(h Hypervisor) string { return fmt.Sprintf("hv%d", h.Index) }

func (p *hypervisorPlan) get(name string) (Hypervisor, bool) {
	i := slices.IndexFunc(p.Hypervisors, func(h Hypervisor) bool { return h.Name == name })
	if i < 0 {
		return Hypervisor{}, false
	}
	return p.Hypervisors[i], true
}

// loadPlan reads the state directory's plan; without one, it is empty.
func loadPlan(l layout) (*hypervisorPlan, error) {
	p := &hypervisorPlan{}
	data, err := os.ReadFile(l.hypervisorsFile())
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the hypervisors: %w", err)
	}
	if err := json.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("read %s: %w", l.hypervisorsFile(), err)
	}
	for i := range p.Hypervisors {
		p.Hypervisors[i].Dir = l.hypervisorDir(p.Hypervisors[i].Name)
	}
	return p, nil
}

// ensurePlan loads the plan and adds the hypervisors of names it lacks,
// each with the next index, its address and a new host UUID.
func ensurePlan(l layout, names []string) (*hypervisorPlan, error) {
	p, err := loadPlan(l)
	if err != nil {
		return nil, err
	}
	changed := false
	if p.ID == "" {
		p.ID = rand.String(6)
		p.FabricNetns = "vessel-" + p.ID + "-fabric"
		p.Subnet = fabricSubnet
		changed = true
	}
	for _, name := range names {
		if _, ok := p.get(name); ok {
			continue
		}
		index := 1
		for _, h := range p.Hypervisors {
			index = max(index, h.Index+1)
		}
		if index > maxHypervisors {
			return nil, fmt.Errorf("no fabric address left for hypervisor %s (%d planned in %s)", name, len(p.Hypervisors), l.hypervisorsFile())
		}
		p.Hypervisors = append(p.Hypervisors, Hypervisor{
			Name:     name,
			Index:    index,
			Netns:    fmt.Sprintf("vessel-%s-%d", p.ID, index),
			Address:  fabricAddress(p.Subnet, index),
			HostUUID: uuid.NewString(),
			Dir:      l.hypervisorDir(name),
		})
		changed = true
	}
	if changed {
		data, err := json.MarshalIndent(p, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode the hypervisors: %w", err)
		}
		if err := atomicfile.Write(l.hypervisorsFile(), append(data, '\n'), 0o644); err != nil {
			return nil, fmt.Errorf("save the hypervisors: %w", err)
		}
	}
	return p, nil
}

// guestsRun reports whether QEMU processes run in the hypervisor's
// network namespace.
func guestsRun(hv Hypervisor) bool {
	pids, _ := hv.LibvirtHost().QEMUPIDs()
	return len(pids) > 0
}

// fabricAddress is hypervisor index's address in subnet.
func fabricAddress(subnet netip.Prefix, index int) netip.Prefix {
	a := subnet.Masked().Addr()
	for range fabricHostOffset + index {
		a = a.Next()
	}
	return netip.PrefixFrom(a, subnet.Bits())
}

// Hypervisors returns the hypervisors the control plane in stateDir runs,
// in the order its options name them, for tools and tests that look inside
// (virsh, ip netns exec) or at their agents' files.
func Hypervisors(stateDir string) ([]Hypervisor, error) {
	l, err := newLayout(stateDir)
	if err != nil {
		return nil, err
	}
	p, err := loadPlan(l)
	if err != nil {
		return nil, err
	}
	opts, err := LoadOptions(l.optionsFile())
	if errors.Is(err, os.ErrNotExist) {
		return p.Hypervisors, nil // started by Start, which keeps no options
	}
	if err != nil {
		return nil, err
	}
	var hvs []Hypervisor
	for _, name := range opts.Hypervisors {
		if h, ok := p.get(name); ok {
			hvs = append(hvs, h)
		}
	}
	return hvs, nil
}
