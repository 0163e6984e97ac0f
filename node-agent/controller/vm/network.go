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

package vm

import (
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/network"
)

// The guest's own claims about its address (the test guest's VESSEL-IP
// console line) are not read: a guest can print anything. Addresses in
// status come from the managed network's DHCP leases only.

// NICConfigs are the domain interfaces of vm: Managed ones get (or keep)
// their port on the managed network net, which may be nil on an agent
// without one, and then refuses them. The VM and clone controllers both
// define domains with them.
func NICConfigs(ctx context.Context, net *network.Manager, vm *v1alpha1.VirtualMachine) ([]hypervisor.NICConfig, error) {
	uid := string(vm.UID)
	var out []hypervisor.NICConfig
	for _, nic := range vm.Spec.Interfaces {
		n := hypervisor.NICConfig{Name: nic.Name, MAC: macFor(uid, nic.Name, nic.MACAddress)}
		switch nic.Type {
		case v1alpha1.InterfaceTypeBridge:
			if net == nil {
				return nil, fmt.Errorf("interface %s: type Bridge, but this agent runs no network rules to keep the guest to its own MAC there", nic.Name)
			}
			att, err := net.AttachBridge(ctx, network.PortKey(uid, nic.Name), n.MAC, nic.Bridge)
			if err != nil {
				return nil, fmt.Errorf("interface %s: %w", nic.Name, err)
			}
			n.Bridge, n.Target = att.Bridge, att.Tap
		case v1alpha1.InterfaceTypeManaged:
			if net == nil {
				return nil, fmt.Errorf("interface %s: type Managed, but this agent runs no managed network", nic.Name)
			}
			att, err := net.Attach(ctx, vm.Namespace, network.PortKey(uid, nic.Name), n.MAC)
			if err != nil {
				return nil, fmt.Errorf("interface %s: %w", nic.Name, err)
			}
			n.Bridge, n.Target = att.Bridge, att.Tap
		}
		out = append(out, n)
	}
	return out, nil
}

// simulatedBridge is the bridge Managed interfaces name on a simulated
// hypervisor, which runs no managed network.
const simulatedBridge = "vessel-sim"

// simulatedNICs are vm's interfaces on a simulated hypervisor: as
// NICConfigs, with Managed ones on simulatedBridge.
func simulatedNICs(vm *v1alpha1.VirtualMachine) []hypervisor.NICConfig {
	var out []hypervisor.NICConfig
	for _, nic := range vm.Spec.Interfaces {
		n := hypervisor.NICConfig{Name: nic.Name, MAC: macFor(string(vm.UID), nic.Name, nic.MACAddress)}
		switch nic.Type {
		case v1alpha1.InterfaceTypeBridge:
			n.Bridge = nic.Bridge
		case v1alpha1.InterfaceTypeManaged:
			n.Bridge = simulatedBridge
		}
		out = append(out, n)
	}
	return out
}

// managedAddresses are the DHCP leases of vm's Managed interfaces, by
// interface name.
func managedAddresses(net *network.Manager, vm *v1alpha1.VirtualMachine) map[string][]string {
	out := map[string][]string{}
	if net == nil {
		return out
	}
	for _, nic := range vm.Spec.Interfaces {
		if nic.Type != v1alpha1.InterfaceTypeManaged {
			continue
		}
		for _, a := range net.Addresses(vm.Namespace, macFor(string(vm.UID), nic.Name, nic.MACAddress)) {
			out[nic.Name] = append(out[nic.Name], a.String())
		}
	}
	return out
}

// MACFor is macFor for the controllers that define a VM's domain
// themselves (clones): status reports the MACs macFor gives.
func MACFor(uid, nic, specMAC string) string { return macFor(uid, nic, specMAC) }

// macFor is the MAC address of a VM's interface: the one in spec, else one
// derived from the VM UID and the interface name, so it stays the same
// across redefinitions and agent restarts. 52:54:00 is QEMU's prefix.
// InterfaceMAC is the MAC address of the VM uid's interface nic, specMAC
// from its spec or the one Vessel derives.
func InterfaceMAC(uid, nic, specMAC string) string { return macFor(uid, nic, specMAC) }

func macFor(uid, nic, specMAC string) string {
	if specMAC != "" {
		return specMAC
	}
	h := sha256.Sum256([]byte(uid + "/" + nic))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}
