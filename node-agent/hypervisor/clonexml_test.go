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
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"
)

// savedXML is a source domain as libvirt writes it into a save image: the
// definition Vessel made, with the addresses and models libvirt filled in.
func savedXML(t *testing.T) string {
	t.Helper()
	cfg := testConfig()
	x, err := DomainXML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	d.GenID = &libvirtxml.DomainGenID{Value: "c3482a7c-2d95-409d-a244-ece38361b188"}
	// The source's guest agent socket, as libvirt placed it.
	for i := range d.Devices.Channels {
		d.Devices.Channels[i].Source.UNIX.Path = "/var/lib/libvirt/qemu/channel/target/domain-3-team-a_web_0b6f3b7e/" + GuestAgentChannel
	}
	for i := range d.Devices.Disks {
		slot := uint(4 + i)
		d.Devices.Disks[i].Address = &libvirtxml.DomainAddress{PCI: &libvirtxml.DomainAddressPCI{Slot: &slot}}
	}
	out, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCloneDomainXMLGivesTheCloneItsOwnFilesAndIdentity(t *testing.T) {
	clone := testConfig()
	clone.Owner.Name, clone.Owner.UID = "web-2", "7e9d3c1a-1b2c-4d5e-8f90-0a1b2c3d4e5f"
	clone.SpecHash = "hash"
	clone.ConsoleLog = "/state/vms/clone/console.log"
	clone.Disks[0].Path = "/state/vms/clone/disk-root.qcow2"
	clone.Disks[0].BackingPath, clone.Disks[0].BackingFormat = "/state/clone-images/x/disk-root.qcow2", "qcow2"
	clone.Disks[0].BackingChain = []BackingFile{{Path: "/cache/sha256-0a1b", Format: "raw"}}
	clone.Disks[2].Path = "/state/vms/clone/seed-seed.iso"
	clone.NICs[0].MAC, clone.NICs[1].MAC = "52:54:00:aa:aa:aa", "52:54:00:bb:bb:bb"
	clone.NICs[1].Bridge, clone.NICs[1].Target = "vb1", "vtc10e000001"

	x, err := cloneDomainXML(savedXML(t), clone)
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	if d.UUID != clone.Owner.UID || d.Name != DomainName("team-a", "web-2", clone.Owner.UID) || d.GenID == nil || d.GenID.Value != "" {
		t.Errorf("uuid %s, name %s, genid %+v: want the clone's, and a genid for libvirt to choose", d.UUID, d.Name, d.GenID)
	}
	if o, hash, err := parseStamp(d.Metadata.XML); err != nil || o.UID != clone.Owner.UID || o.Name != "web-2" || hash != "hash" {
		t.Errorf("owner stamp: %+v %q %v", o, hash, err)
	}
	if len(d.Devices.Channels) != 1 || d.Devices.Channels[0].Target.VirtIO.Name != GuestAgentChannel || d.Devices.Channels[0].Source.UNIX.Path != "" {
		t.Errorf("channels %+v: want the guest agent's port kept, with a socket libvirt places anew", d.Devices.Channels)
	}
	root := d.Devices.Disks[0]
	if root.Source.File.File != "/state/vms/clone/disk-root.qcow2" || root.Address == nil || *root.Address.PCI.Slot != 4 ||
		root.BackingStore.Source.File.File != "/state/clone-images/x/disk-root.qcow2" || root.BackingStore.Format.Type != "qcow2" ||
		root.BackingStore.BackingStore.Source.File.File != "/cache/sha256-0a1b" || !chainEnds(root.BackingStore.BackingStore.BackingStore) {
		t.Errorf("root disk: %+v backing %+v", root.Source.File, root.BackingStore)
	}
	if d.Devices.Disks[2].Source.File.File != "/state/vms/clone/seed-seed.iso" {
		t.Errorf("seed: %+v", d.Devices.Disks[2].Source.File)
	}
	if d.Devices.Interfaces[0].MAC.Address != "52:54:00:aa:aa:aa" || d.Devices.Interfaces[1].MAC.Address != "52:54:00:bb:bb:bb" {
		t.Errorf("MACs: %+v %+v", d.Devices.Interfaces[0].MAC, d.Devices.Interfaces[1].MAC)
	}
	// Its own tap and bridge: the source's tap is in use while it runs.
	if n := d.Devices.Interfaces[1]; n.Target == nil || n.Target.Dev != "vtc10e000001" || n.Source.Bridge.Bridge != "vb1" || d.Devices.Interfaces[0].Target != nil {
		t.Errorf("interfaces: %+v, want the clone's tap vtc10e000001 on vb1", d.Devices.Interfaces)
	}
	if d.Devices.Serials[0].Log.File != clone.ConsoleLog {
		t.Errorf("console log: %+v", d.Devices.Serials[0].Log)
	}
}

// A clone must be the machine the memory ran on: other hardware, disks or
// NICs are refused rather than restored into a guest that would not match.
func TestCloneDomainXMLRefusesAnotherMachine(t *testing.T) {
	for name, change := range map[string]func(*DomainConfig){
		"memory":   func(c *DomainConfig) { c.MemoryKiB *= 2 },
		"cpus":     func(c *DomainConfig) { c.CPUs++ },
		"disk":     func(c *DomainConfig) { c.Disks = c.Disks[:3] },
		"new disk": func(c *DomainConfig) { c.Disks = append(c.Disks, DiskConfig{Name: "extra", Path: "/x", Format: "raw"}) },
		"nic":      func(c *DomainConfig) { c.NICs = c.NICs[:1] },
	} {
		cfg := testConfig()
		change(cfg)
		if _, err := cloneDomainXML(savedXML(t), cfg); err == nil {
			t.Errorf("%s changed: the clone was accepted", name)
		}
	}
	uefi := strings.Replace(savedXML(t), "<os>", "<os firmware=\"efi\">", 1)
	if _, err := cloneDomainXML(uefi, testConfig()); err == nil || !strings.Contains(err.Error(), "UEFI") {
		t.Errorf("UEFI: %v", err)
	}
}

// chainEnds says b is the empty <backingStore/> that ends a chain.
func chainEnds(b *libvirtxml.DomainDiskBackingStore) bool {
	return b != nil && b.Format == nil && (b.Source == nil || b.Source.File == nil)
}
