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

package hypervisor

import (
	"fmt"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// cloneDomainXML rewrites the domain XML saved in a memory image so that
// libvirt restores the saved guest as cfg's domain: cfg's name, UUID and
// owner stamp, cfg's disk files (the
// clone's overlays and their backing chains), MAC addresses and console
// log; libvirt gives a restored domain a new VM generation ID of its own. Everything else (devices, their addresses, CPU and machine type) is
// left as saved: it is what the memory in the image was running on, and
// QEMU refuses a migration stream for different hardware. cfg must
// describe the same machine (the clone's spec is its source's).
func cloneDomainXML(saved string, cfg *DomainConfig) (string, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(saved); err != nil {
		return "", fmt.Errorf("parse saved domain: %w", err)
	}
	if d.OS != nil && (d.OS.NVRam != nil || d.OS.Firmware != "" || d.OS.Loader != nil) {
		return "", fmt.Errorf("the saved domain boots UEFI firmware, whose NVRAM a memory clone cannot share: clone it without memory")
	}
	if d.VCPU == nil || d.VCPU.Value != cfg.CPUs {
		return "", fmt.Errorf("the saved domain has other CPUs than the clone (%v, want %d)", d.VCPU, cfg.CPUs)
	}
	if kib, err := memoryKiB(d.Memory); err != nil || kib != cfg.MemoryKiB {
		return "", fmt.Errorf("the saved domain has %d KiB of memory, the clone %d KiB (%v)", kib, cfg.MemoryKiB, err)
	}

	o := cfg.Owner
	d.Name = DomainName(o.Namespace, o.Name, o.UID)
	d.UUID = o.UID
	d.GenID = &libvirtxml.DomainGenID{}
	d.Title = o.Namespace + "/" + o.Name
	d.Description = "Vessel VirtualMachine " + o.Namespace + "/" + o.Name
	d.Metadata = &libvirtxml.DomainMetadata{XML: marshalOwner(o, cfg.SpecHash)}
	if d.OS != nil && cfg.Kernel != "" {
		d.OS.Kernel, d.OS.Initrd, d.OS.Cmdline = cfg.Kernel, cfg.Initrd, cfg.Cmdline
	}
	if d.Devices == nil {
		return "", fmt.Errorf("the saved domain has no devices")
	}

	disks, _, err := domainDisks(cfg.Disks)
	if err != nil {
		return "", err
	}
	want := map[string]libvirtxml.DomainDisk{}
	for _, disk := range disks {
		want[disk.Alias.Name] = disk
	}
	for i := range d.Devices.Disks {
		saved := &d.Devices.Disks[i]
		if saved.Alias == nil {
			return "", fmt.Errorf("saved disk %s has no Vessel alias", targetOf(saved))
		}
		disk, ok := want[saved.Alias.Name]
		if !ok {
			return "", fmt.Errorf("saved disk %q is not among the clone's disks", strings.TrimPrefix(saved.Alias.Name, "ua-disk-"))
		}
		delete(want, saved.Alias.Name)
		if saved.Driver == nil {
			saved.Driver = &libvirtxml.DomainDiskDriver{Name: "qemu"}
		}
		saved.Driver.Type = disk.Driver.Type
		saved.Source, saved.BackingStore, saved.ReadOnly = disk.Source, disk.BackingStore, disk.ReadOnly
	}
	for alias := range want {
		return "", fmt.Errorf("the clone's disk %q was not in the saved domain", strings.TrimPrefix(alias, "ua-disk-"))
	}

	macs := map[string]string{}
	nics := map[string]NICConfig{}
	for _, nic := range cfg.NICs {
		macs["ua-net-"+nic.Name] = nic.MAC
		nics["ua-net-"+nic.Name] = nic
	}
	for i := range d.Devices.Interfaces {
		iface := &d.Devices.Interfaces[i]
		if iface.Alias == nil {
			return "", fmt.Errorf("saved interface %d has no Vessel alias", i)
		}
		mac, ok := macs[iface.Alias.Name]
		if !ok {
			return "", fmt.Errorf("saved interface %q is not among the clone's", strings.TrimPrefix(iface.Alias.Name, "ua-net-"))
		}
		// The clone's own port on the managed network: the saved domain
		// names the source's tap (in use while the source runs) and bridge.
		nic := nics[iface.Alias.Name]
		iface.Target = nil
		if nic.Target != "" {
			iface.Target = &libvirtxml.DomainInterfaceTarget{Dev: nic.Target}
		}
		if nic.Bridge != "" && iface.Source != nil && iface.Source.Bridge != nil {
			iface.Source.Bridge.Bridge = nic.Bridge
		}
		delete(macs, iface.Alias.Name)
		if mac == "" {
			iface.MAC = nil // libvirt picks one
		} else {
			iface.MAC = &libvirtxml.DomainInterfaceMAC{Address: mac}
		}
	}
	for alias := range macs {
		return "", fmt.Errorf("the clone's interface %q was not in the saved domain", strings.TrimPrefix(alias, "ua-net-"))
	}

	for i := range d.Devices.Serials {
		if d.Devices.Serials[i].Log != nil {
			d.Devices.Serials[i].Log.File = cfg.ConsoleLog
		}
	}
	for i := range d.Devices.Consoles {
		if d.Devices.Consoles[i].Log != nil {
			d.Devices.Consoles[i].Log.File = cfg.ConsoleLog
		}
	}
	// A channel's host side is a per-domain socket; a clone would take over
	// its source's. The guest agent's port stays (the guest's memory knows
	// it) with a socket libvirt places anew; Vessel plugs its identity port
	// in only for a moment.
	for i := range d.Devices.Channels {
		ch := &d.Devices.Channels[i]
		if ch.Target != nil && ch.Target.VirtIO != nil && ch.Target.VirtIO.Name == GuestAgentChannel && ch.Source != nil && ch.Source.UNIX != nil {
			ch.Source.UNIX.Path = ""
			continue
		}
		if ch.Source != nil && ch.Source.UNIX != nil {
			return "", fmt.Errorf("the saved domain has a channel on socket %s (the identity port was still plugged in?)", ch.Source.UNIX.Path)
		}
	}

	out, err := d.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshal clone domain %s: %w", o.UID, err)
	}
	return out, nil
}

func targetOf(d *libvirtxml.DomainDisk) string {
	if d.Target != nil {
		return d.Target.Dev
	}
	return "?"
}

// memoryKiB reads a domain's <memory> in KiB.
func memoryKiB(m *libvirtxml.DomainMemory) (uint64, error) {
	if m == nil {
		return 0, fmt.Errorf("no memory element")
	}
	v := uint64(m.Value)
	switch strings.ToLower(m.Unit) {
	case "", "k", "kib":
		return v, nil
	case "b", "bytes":
		return v / 1024, nil
	case "m", "mib":
		return v * 1024, nil
	case "g", "gib":
		return v * 1024 * 1024, nil
	}
	return 0, fmt.Errorf("unit %q", m.Unit)
}
