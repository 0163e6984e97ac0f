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

func testConfig() *DomainConfig {
	return &DomainConfig{
		Owner:      Owner{Namespace: "team-a", Name: "web", UID: "0b6f3b7e-6a5e-4a53-9d1c-3e7d1d6f0a11", Hypervisor: "hv1", HypervisorUID: "5d1c0a3e-2f4b-4c8e-9a7d-6b3e2f1a0c9d"},
		CPUs:       2,
		MemoryKiB:  128 * 1024,
		Kernel:     "/cache/vmlinuz",
		Initrd:     "/cache/initrd",
		Cmdline:    "console=ttyS0 quiet",
		ConsoleLog: "/state/vms/uid/console.log",
		Disks: []DiskConfig{
			{Name: "root", Path: "/state/vms/uid/disk-root.qcow2", Format: "qcow2", Bus: "virtio", BackingPath: "/cache/sha256-0a1b", BackingFormat: "raw"},
			{Name: "data", Path: "/images/data.raw", Format: "raw", Bus: "virtio", ReadOnly: true},
			{Name: "seed", Path: "/state/vms/uid/seed-seed.iso", Format: "raw", Bus: "virtio", CDROM: true},
			{Name: "scratch", Path: "/state/vms/uid/disk-scratch.qcow2", Format: "qcow2", Bus: "scsi"},
		},
		NICs: []NICConfig{{Name: "default", MAC: "52:54:00:01:02:03"}, {Name: "lan", Bridge: "br0", MAC: "52:54:00:04:05:06", Target: "vt0123456789"}},
	}
}

func TestDomainXML(t *testing.T) {
	x, err := DomainXML(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		t.Fatalf("generated XML does not parse: %v\n%s", err, x)
	}
	check := func(what string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("type", d.Type, "qemu")
	check("name", d.Name, "team-a_web_0b6f3b7e")
	check("uuid", d.UUID, "0b6f3b7e-6a5e-4a53-9d1c-3e7d1d6f0a11")
	check("memory", d.Memory.Value, uint(131072))
	check("vcpu", d.VCPU.Value, uint(2))
	check("machine", d.OS.Type.Machine, "pc")
	check("kernel", d.OS.Kernel, "/cache/vmlinuz")
	check("initrd", d.OS.Initrd, "/cache/initrd")
	check("cmdline", d.OS.Cmdline, "console=ttyS0 quiet")
	check("on_poweroff", d.OnPoweroff, "destroy")
	check("on_crash", d.OnCrash, "destroy")
	if d.Features == nil || d.Features.ACPI == nil {
		t.Errorf("no ACPI: the guest could not see the power button")
	}
	if d.Features.TCG == nil || d.Features.TCG.TBCache == nil {
		t.Errorf("no TCG translation cache size under TCG")
	}
	// The guest agent's port, with a socket libvirt places itself.
	agent := 0
	for _, ch := range d.Devices.Channels {
		if ch.Target != nil && ch.Target.VirtIO != nil && ch.Target.VirtIO.Name == GuestAgentChannel &&
			ch.Source != nil && ch.Source.UNIX != nil && ch.Source.UNIX.Mode == "bind" && ch.Source.UNIX.Path == "" {
			agent++
		}
	}
	if agent != 1 {
		t.Errorf("%d %s channels with a libvirt-placed socket, want 1:\n%s", agent, GuestAgentChannel, x)
	}

	type disk struct {
		dev, bus, device, file string
		ro                     bool
	}
	var disks []disk
	for _, dd := range d.Devices.Disks {
		disks = append(disks, disk{dd.Target.Dev, dd.Target.Bus, dd.Device, dd.Source.File.File, dd.ReadOnly != nil})
	}
	want := []disk{
		{"vda", "virtio", "disk", "/state/vms/uid/disk-root.qcow2", false},
		{"vdb", "virtio", "disk", "/images/data.raw", true},
		{"hdc", "ide", "cdrom", "/state/vms/uid/seed-seed.iso", true},
		{"sda", "scsi", "disk", "/state/vms/uid/disk-scratch.qcow2", false},
	}
	if len(disks) != len(want) {
		t.Fatalf("disks = %+v, want %+v", disks, want)
	}
	for i := range want {
		if disks[i] != want[i] {
			t.Errorf("disk %d = %+v, want %+v", i, disks[i], want[i])
		}
	}
	// The whole chain is declared: the overlay's backing file with its
	// format, then an end marker; every other disk ends at once. libvirt
	// then never reads a backing file or format from an image header.
	isEnd := func(b *libvirtxml.DomainDiskBackingStore) bool {
		return b != nil && b.Format == nil && (b.Source == nil || b.Source.File == nil)
	}
	for i, dd := range d.Devices.Disks {
		b := dd.BackingStore
		if i == 0 {
			if b == nil || b.Format == nil || b.Format.Type != "raw" || b.Source == nil || b.Source.File == nil ||
				b.Source.File.File != "/cache/sha256-0a1b" || !isEnd(b.BackingStore) {
				t.Errorf("overlay backing chain = %+v", b)
			}
			continue
		}
		if !isEnd(b) {
			t.Errorf("disk %s: backingStore %+v, want an empty end marker", dd.Target.Dev, b)
		}
	}
	if !strings.Contains(x, "<backingStore></backingStore>") && !strings.Contains(x, "<backingStore/>") {
		t.Errorf("no empty <backingStore/> in\n%s", x)
	}
	models := map[string]bool{}
	for _, c := range d.Devices.Controllers {
		models[c.Type+"/"+c.Model] = true
	}
	if len(d.Devices.Controllers) != 2 || !models["scsi/virtio-scsi"] {
		t.Errorf("scsi disk without a virtio-scsi controller: %+v", d.Devices.Controllers)
	}
	// Memory clones: the identity port's bus and a VM generation ID.
	if !models["virtio-serial/"] || d.GenID == nil {
		t.Errorf("no virtio-serial controller (%+v) or no <genid/> (%+v)", d.Devices.Controllers, d.GenID)
	}
	if n := d.Devices.Interfaces; len(n) != 2 || n[0].Source.User == nil || n[0].Model.Type != "virtio" ||
		n[0].MAC.Address != "52:54:00:01:02:03" || n[1].Source.Bridge == nil || n[1].Source.Bridge.Bridge != "br0" ||
		n[0].Target != nil || n[1].Target == nil || n[1].Target.Dev != "vt0123456789" {
		t.Errorf("interfaces = %+v", n)
	}
	if s := d.Devices.Serials; len(s) != 1 || s[0].Source.Pty == nil || s[0].Log == nil ||
		s[0].Log.File != "/state/vms/uid/console.log" || s[0].Log.Append != "off" {
		t.Errorf("serial = %+v", s)
	}
	if len(d.Devices.Consoles) != 1 {
		t.Errorf("no console")
	}

	// The owner stamp is namespaced and reads back.
	if !strings.Contains(d.Metadata.XML, MetadataNamespace) {
		t.Fatalf("metadata without the vessel namespace: %s", d.Metadata.XML)
	}
	o, err := parseOwner(d.Metadata.XML)
	if err != nil {
		t.Fatal(err)
	}
	if o != testConfig().Owner {
		t.Errorf("owner = %+v, want %+v", o, testConfig().Owner)
	}
}

func TestDomainXMLVariants(t *testing.T) {
	cfg := testConfig()
	cfg.KVM = true
	cfg.Kernel, cfg.Initrd, cfg.Cmdline = "", "", ""
	x, err := DomainXML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	if d.Type != "kvm" || d.Features.TCG != nil {
		t.Errorf("KVM domain: type %s, tcg %+v", d.Type, d.Features.TCG)
	}
	if d.OS.Kernel != "" || len(d.OS.BootDevices) == 0 || d.OS.BootDevices[0].Dev != "hd" {
		t.Errorf("disk boot: %+v", d.OS)
	}
	cfg.UEFI = true
	x, _ = DomainXML(cfg)
	_ = d.Unmarshal(x)
	if d.OS.Firmware != "efi" {
		t.Errorf("UEFI firmware = %q", d.OS.Firmware)
	}

	for name, mutate := range map[string]func(*DomainConfig){
		"no uid":    func(c *DomainConfig) { c.Owner.UID = "" },
		"no memory": func(c *DomainConfig) { c.MemoryKiB = 0 },
		"bad bus":   func(c *DomainConfig) { c.Disks[0].Bus = "floppy" },
		// QEMU would probe the format: whoever wrote the file picks it.
		"no format":                func(c *DomainConfig) { c.Disks[1].Format = "" },
		"backing without a format": func(c *DomainConfig) { c.Disks[0].BackingFormat = "" },
		"ide is full": func(c *DomainConfig) {
			for i := 0; i < 3; i++ {
				c.Disks = append(c.Disks, DiskConfig{Name: "cd", Path: "/x.iso", Format: "raw", CDROM: true})
			}
		},
	} {
		c := testConfig()
		mutate(c)
		if _, err := DomainXML(c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestOwnerMetadataEscapes(t *testing.T) {
	o := Owner{Namespace: "ns", Name: "a<b>&c", UID: "u", Hypervisor: "h", HypervisorUID: "h&u"}
	got, err := parseOwner(marshalOwner(o, "h1"))
	if err != nil || got != o {
		t.Errorf("round trip = %+v, %v; want %+v", got, err, o)
	}
	if _, err := parseOwner("<vm xmlns='" + MetadataNamespace + "'><name>x</name></vm>"); err == nil {
		t.Errorf("owner without uid accepted")
	}
}

func TestOwnerWithoutHypervisorUIDReadsBack(t *testing.T) {
	// The stamp of an agent older than the hypervisor UID.
	old := "<vm xmlns='" + MetadataNamespace + "'><namespace>ns</namespace><name>n</name><uid>u</uid><hypervisor>h</hypervisor></vm>"
	got, err := parseOwner(old)
	if err != nil || got != (Owner{Namespace: "ns", Name: "n", UID: "u", Hypervisor: "h"}) {
		t.Errorf("old stamp = %+v, %v", got, err)
	}
}

func TestDomainNamesOfSameNamedVMsDiffer(t *testing.T) {
	a := DomainName("team-a", "demo", "0b6f3b7e-6a5e-4a53-9d1c-3e7d1d6f0a11")
	b := DomainName("team-a", "demo", "9c2d4e6f-1a3b-4c5d-8e7f-0a1b2c3d4e5f")
	if a != "team-a_demo_0b6f3b7e" || a == b {
		t.Errorf("domain names %q and %q", a, b)
	}
}

func TestDiskLetters(t *testing.T) {
	for idx, want := range map[int]string{0: "a", 1: "b", 25: "z", 26: "aa", 27: "ab", 701: "zz", 702: "aaa"} {
		if got := diskLetters(idx); got != want {
			t.Errorf("diskLetters(%d) = %q, want %q", idx, got, want)
		}
	}
}

func TestVersionString(t *testing.T) {
	if got := versionString(9000000); got != "9.0.0" {
		t.Errorf("got %s", got)
	}
	if got := versionString(7002011); got != "7.2.11" {
		t.Errorf("got %s", got)
	}
}
