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
	"encoding/xml"
	"fmt"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// MetadataNamespace is the XML namespace of Vessel's owner stamp in a
// domain's <metadata>. A domain without it is not Vessel's.
const MetadataNamespace = "https://vessel.dev/xmlns/domain/v1alpha1"

// metadataPrefix is the prefix libvirt writes the owner element with.
const metadataPrefix = "vessel"

// DomainConfig is everything needed to define one VM's domain. The agent
// fills it from the VM spec and the provisioned files.
type DomainConfig struct {
	Owner Owner
	// SpecHash identifies the VM spec the domain was built from; it is kept
	// in the metadata so a changed spec can be detected (Domain.SpecHash).
	SpecHash string
	// KVM selects <domain type='kvm'>; otherwise TCG (type 'qemu').
	KVM       bool
	CPUs      uint
	MemoryKiB uint64
	// UEFI boots with OVMF firmware (ignored with a kernel).
	UEFI bool
	// Kernel, Initrd and Cmdline boot the guest directly when Kernel is set.
	Kernel  string
	Initrd  string
	Cmdline string
	Disks   []DiskConfig
	NICs    []NICConfig
	// ConsoleLog is where virtlogd records the serial console, from power-on.
	ConsoleLog string
}

// DiskConfig is one disk file attached to the guest. Formats are always
// declared: the domain XML spells out the whole backing chain, so libvirt
// and QEMU never read a format or a backing file from a file's header.
type DiskConfig struct {
	Name     string
	Path     string
	Format   string // qcow2, raw
	Bus      string // virtio, sata, scsi, ide
	ReadOnly bool
	CDROM    bool
	// BackingPath and BackingFormat are the backing file of a qcow2
	// overlay, itself without a backing file unless BackingChain goes on.
	BackingPath   string
	BackingFormat string
	// BackingChain is the rest of the chain below BackingPath, in order
	// (each file is a qcow2 backed by the next): a clone's overlay is
	// backed by a frozen copy of its source's overlay, which is backed by
	// the source's image.
	BackingChain []BackingFile
}

// BackingFile is one file of a disk's backing chain, with its declared
// format.
type BackingFile struct {
	Path   string
	Format string
}

// NICConfig is one network interface.
type NICConfig struct {
	Name   string
	Bridge string // empty: user-mode networking
	MAC    string
	// Target names the host side (tap) of a bridged interface; empty:
	// libvirt picks one.
	Target string
}

// DomainName is the libvirt name of a new domain for the VM
// namespace/name with UID uid: readable in `virsh list`, and unique on a
// libvirtd that several control planes share (each may have a VM
// team-a/demo) thanks to the first 8 characters of the VM UID. A domain
// keeps the name it was defined with (libvirt cannot rename a UUID on
// define): look an existing domain's name up with Lookup.
func DomainName(namespace, name, uid string) string {
	return namespace + "_" + name + "_" + uid[:min(len(uid), 8)]
}

// ownerXML is the owner stamp stored under MetadataNamespace.
type ownerXML struct {
	XMLName       xml.Name `xml:"vm"`
	Namespace     string   `xml:"namespace"`
	Name          string   `xml:"name"`
	UID           string   `xml:"uid"`
	Hypervisor    string   `xml:"hypervisor"`
	HypervisorUID string   `xml:"hypervisor-uid"`
	SpecHash      string   `xml:"spec-hash"`
}

func marshalOwner(o Owner, specHash string) string {
	// libvirt keeps a metadata element only with a namespace; it rewrites
	// the prefix, so any prefix works on the way in.
	var b strings.Builder
	b.WriteString(`<` + metadataPrefix + `:vm xmlns:` + metadataPrefix + `="` + MetadataNamespace + `">`)
	for _, f := range [][2]string{{"namespace", o.Namespace}, {"name", o.Name}, {"uid", o.UID}, {"hypervisor", o.Hypervisor}, {"hypervisor-uid", o.HypervisorUID}, {"spec-hash", specHash}} {
		b.WriteString(`<` + metadataPrefix + `:` + f[0] + `>`)
		_ = xml.EscapeText(&b, []byte(f[1]))
		b.WriteString(`</` + metadataPrefix + `:` + f[0] + `>`)
	}
	b.WriteString(`</` + metadataPrefix + `:vm>`)
	return b.String()
}

// parseOwner reads the owner stamp as returned by virDomainGetMetadata.
func parseOwner(s string) (Owner, error) {
	o, _, err := parseStamp(s)
	return o, err
}

// parseStamp reads the owner and spec hash from the metadata element.
func parseStamp(s string) (Owner, string, error) {
	var o ownerXML
	if err := xml.Unmarshal([]byte(s), &o); err != nil {
		return Owner{}, "", fmt.Errorf("parse owner metadata: %w", err)
	}
	if o.UID == "" || o.Name == "" {
		return Owner{}, "", fmt.Errorf("owner metadata without uid or name: %q", s)
	}
	return Owner{Namespace: o.Namespace, Name: o.Name, UID: o.UID, Hypervisor: o.Hypervisor, HypervisorUID: o.HypervisorUID}, o.SpecHash, nil
}

// DomainXML builds the libvirt definition of a new domain for cfg. It is
// the only place that decides what a Vessel guest looks like to QEMU.
func DomainXML(cfg *DomainConfig) (string, error) {
	return domainXML(cfg, DomainName(cfg.Owner.Namespace, cfg.Owner.Name, cfg.Owner.UID))
}

// domainXML is DomainXML for a domain called name.
func domainXML(cfg *DomainConfig, name string) (string, error) {
	if cfg.Owner.UID == "" || cfg.Owner.Name == "" {
		return "", fmt.Errorf("domain config without owner uid or name")
	}
	if cfg.MemoryKiB == 0 || cfg.CPUs == 0 {
		return "", fmt.Errorf("domain config without memory or cpus")
	}
	domType := "qemu"
	if cfg.KVM {
		domType = "kvm"
	}
	port0, zero := uint(0), uint(0)
	dom := &libvirtxml.Domain{
		Type:        domType,
		Name:        name,
		UUID:        cfg.Owner.UID,
		Title:       cfg.Owner.Namespace + "/" + cfg.Owner.Name,
		Description: "Vessel VirtualMachine " + cfg.Owner.Namespace + "/" + cfg.Owner.Name,
		Metadata:    &libvirtxml.DomainMetadata{XML: marshalOwner(cfg.Owner, cfg.SpecHash)},
		// A VM generation ID device (libvirt picks the value): a memory
		// clone gets a new one, and guests that know the device (Windows,
		// Linux with vmgenid) reseed their RNG when it changes.
		GenID:  &libvirtxml.DomainGenID{},
		Memory: &libvirtxml.DomainMemory{Value: uint(cfg.MemoryKiB), Unit: "KiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: cfg.CPUs},
		OS: &libvirtxml.DomainOS{
			// i440fx: the test guest's cloud kernel has no AHCI, and IDE
			// carries the cloud-init CD-ROM.
			Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
		},
		Features: &libvirtxml.DomainFeatureList{
			ACPI: &libvirtxml.DomainFeature{},
			APIC: &libvirtxml.DomainFeatureAPIC{},
		},
		Clock:      &libvirtxml.DomainClock{Offset: "utc"},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port0},
				Log:    &libvirtxml.DomainChardevLog{File: cfg.ConsoleLog, Append: "off"},
			}},
			Consoles: []libvirtxml.DomainConsole{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: &port0},
			}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	// The bus of the identity port a memory clone's guest is told its new
	// identity on (identity.go). The port itself is plugged in only then;
	// the controller must be there from boot, as it is part of the
	// machine a clone resumes.
	dom.Devices.Controllers = append(dom.Devices.Controllers, libvirtxml.DomainController{Type: "virtio-serial", Index: &zero})
	// The QEMU guest agent's port (guestagent.go); libvirt picks the host
	// end's socket path and tells when the guest opens the port.
	dom.Devices.Channels = append(dom.Devices.Channels, libvirtxml.DomainChannel{
		Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind"}},
		Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: GuestAgentChannel}},
	})
	if !cfg.KVM {
		// A smaller translation cache trims QEMU's RSS by ~32 MiB per guest.
		dom.Features.TCG = &libvirtxml.DomainFeatureTCG{TBCache: &libvirtxml.DomainFeatureTCGTBCache{Size: 32, Unit: "MiB"}}
	}
	switch {
	case cfg.Kernel != "":
		dom.OS.Kernel = cfg.Kernel
		dom.OS.Initrd = cfg.Initrd
		dom.OS.Cmdline = cfg.Cmdline
	case cfg.UEFI:
		dom.OS.Firmware = "efi"
	default:
		dom.OS.BootDevices = []libvirtxml.DomainBootDevice{{Dev: "hd"}, {Dev: "cdrom"}}
	}

	disks, needSCSI, err := domainDisks(cfg.Disks)
	if err != nil {
		return "", err
	}
	dom.Devices.Disks = disks
	if needSCSI {
		dom.Devices.Controllers = append(dom.Devices.Controllers, libvirtxml.DomainController{Type: "scsi", Model: "virtio-scsi"})
	}
	for _, nic := range cfg.NICs {
		iface := libvirtxml.DomainInterface{
			Model: &libvirtxml.DomainInterfaceModel{Type: "virtio"},
			Alias: &libvirtxml.DomainAlias{Name: "ua-net-" + nic.Name},
		}
		if nic.MAC != "" {
			iface.MAC = &libvirtxml.DomainInterfaceMAC{Address: nic.MAC}
		}
		if nic.Bridge != "" {
			iface.Source = &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: nic.Bridge}}
			if nic.Target != "" {
				iface.Target = &libvirtxml.DomainInterfaceTarget{Dev: nic.Target}
			}
		} else {
			iface.Source = &libvirtxml.DomainInterfaceSource{User: &libvirtxml.DomainInterfaceSourceUser{}}
		}
		dom.Devices.Interfaces = append(dom.Devices.Interfaces, iface)
	}
	out, err := dom.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshal domain %s: %w", cfg.Owner.UID, err)
	}
	return out, nil
}

// domainDisks maps disks to libvirt devices with stable target names per bus
// (vda.., sda.., hdc..): the order in the spec is the order in the guest.
func domainDisks(in []DiskConfig) ([]libvirtxml.DomainDisk, bool, error) {
	next := map[string]int{}
	needSCSI := false
	var out []libvirtxml.DomainDisk
	for _, d := range in {
		bus := d.Bus
		if bus == "" {
			bus = "virtio"
		}
		if d.CDROM && bus != "sata" && bus != "scsi" {
			// i440fx: the CD-ROM goes on IDE, secondary master first
			// (hdc), like a PC's optical drive.
			bus = "ide"
		}
		var prefix string
		switch bus {
		case "virtio":
			prefix = "vd"
		case "sata":
			prefix = "sd"
		case "scsi":
			prefix = "sd"
			needSCSI = true
		case "ide":
			prefix = "hd"
		default:
			return nil, false, fmt.Errorf("disk %s: unsupported bus %q", d.Name, bus)
		}
		idx := next[prefix]
		if prefix == "hd" && idx == 0 {
			idx = 2
		}
		if prefix == "hd" && idx > 3 {
			return nil, false, fmt.Errorf("disk %s: no IDE slot left", d.Name)
		}
		next[prefix] = idx + 1
		if d.Format == "" {
			return nil, false, fmt.Errorf("disk %s: no format: formats are declared, never probed", d.Name)
		}
		backing, err := backingStore(d)
		if err != nil {
			return nil, false, err
		}
		disk := libvirtxml.DomainDisk{
			Device:       "disk",
			Driver:       &libvirtxml.DomainDiskDriver{Name: "qemu", Type: d.Format},
			Source:       &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: d.Path}},
			BackingStore: backing,
			Target:       &libvirtxml.DomainDiskTarget{Dev: prefix + diskLetters(idx), Bus: bus},
			Alias:        &libvirtxml.DomainAlias{Name: "ua-disk-" + d.Name},
		}
		if d.CDROM {
			disk.Device = "cdrom"
		}
		if d.ReadOnly || d.CDROM {
			disk.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
		}
		out = append(out, disk)
	}
	return out, needSCSI, nil
}

// backingStore spells out d's whole backing chain. An empty
// <backingStore/> ends it: libvirt then gives QEMU "backing": null and
// never follows a backing file named in the last image.
func backingStore(d DiskConfig) (*libvirtxml.DomainDiskBackingStore, error) {
	if d.BackingPath == "" {
		if len(d.BackingChain) > 0 {
			return nil, fmt.Errorf("disk %s: backing chain without a backing file", d.Name)
		}
		return &libvirtxml.DomainDiskBackingStore{}, nil
	}
	files := append([]BackingFile{{Path: d.BackingPath, Format: d.BackingFormat}}, d.BackingChain...)
	chain := &libvirtxml.DomainDiskBackingStore{}
	for i := len(files) - 1; i >= 0; i-- {
		f := files[i]
		if f.Path == "" || f.Format == "" {
			return nil, fmt.Errorf("disk %s: backing file %q without a path or a format", d.Name, f.Path)
		}
		if i < len(files)-1 && f.Format != "qcow2" {
			return nil, fmt.Errorf("disk %s: backing file %s is %s but has a backing file", d.Name, f.Path, f.Format)
		}
		chain = &libvirtxml.DomainDiskBackingStore{
			Format:       &libvirtxml.DomainDiskFormat{Type: f.Format},
			Source:       &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: f.Path}},
			BackingStore: chain,
		}
	}
	return chain, nil
}

// diskLetters is the letter suffix of the idx-th disk: a..z, aa..
func diskLetters(idx int) string {
	s := ""
	for idx >= 0 {
		s = string(rune('a'+idx%26)) + s
		idx = idx/26 - 1
	}
	return s
}
