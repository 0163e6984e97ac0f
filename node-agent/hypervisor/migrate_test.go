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

func TestMigrationDestXML(t *testing.T) {
	src := `<domain type="qemu">
  <name>ns_vm_u1</name>
  <uuid>7d2f0c3e-1111-2222-3333-444455556666</uuid>
  <metadata><vessel:vm xmlns:vessel="https://vessel.dev/xmlns/domain/v1alpha1"><vessel:hypervisor>hv1</vessel:hypervisor></vessel:vm></metadata>
  <memory unit="KiB">131072</memory>
  <os><type>hvm</type><kernel>/var/lib/vessel/images/vmlinuz</kernel><initrd>/state1/images/initrd</initrd></os>
  <devices>
    <disk type="file" device="disk">
      <driver name="qemu" type="qcow2"/>
      <source file="/state1/vms/u1/disk-data.qcow2"/>
      <backingStore type="file"><format type="raw"/><source file="/state1/images/base"/></backingStore>
      <target dev="vda" bus="virtio"/>
    </disk>
    <disk type="file" device="cdrom">
      <driver name="qemu" type="raw"/>
      <source file="/state1/vms/u1/seed-seed.iso"/>
      <target dev="hda" bus="ide"/>
      <readonly/>
    </disk>
    <interface type="bridge">
      <mac address="52:54:00:AA:BB:CC"/>
      <source bridge="vbr-src"/>
      <target dev="vtap-src"/>
      <model type="virtio"/>
    </interface>
    <serial type="pty"><log file="/state1/vms/u1/console.log" append="off"/><target port="0"/></serial>
  </devices>
</domain>`
	out, err := MigrationDestXML(src, MigrationTarget{
		Owner:    Owner{Namespace: "ns", Name: "vm", UID: "7d2f0c3e-1111-2222-3333-444455556666", Hypervisor: "hv2", HypervisorUID: "hv2-uid"},
		SpecHash: "h1",
		Paths: map[string]string{
			"/state1/vms/u1/disk-data.qcow2": "/state2/vms/u1/disk-data.qcow2",
			"/state1/vms/u1/seed-seed.iso":   "/state2/vms/u1/seed-seed.iso",
			"/state1/vms/u1/console.log":     "/state2/vms/u1/console.log",
			"/state1/images/initrd":          "/state2/vms/u1/initrd",
		},
		NICs: map[string]NICConfig{"52:54:00:aa:bb:cc": {Bridge: "vbr-dst", Target: "vtap-dst"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(out); err != nil {
		t.Fatal(err)
	}
	owner, hash, err := parseStamp(d.Metadata.XML)
	if err != nil || owner.Hypervisor != "hv2" || owner.HypervisorUID != "hv2-uid" || hash != "h1" {
		t.Errorf("stamp = %+v %q %v, want the target's", owner, hash, err)
	}
	if d.OS.Kernel != "/var/lib/vessel/images/vmlinuz" || d.OS.Initrd != "/state2/vms/u1/initrd" {
		t.Errorf("kernel %q initrd %q: shared paths stay, the agent's own move", d.OS.Kernel, d.OS.Initrd)
	}
	disk := d.Devices.Disks[0]
	if disk.Source.File.File != "/state2/vms/u1/disk-data.qcow2" {
		t.Errorf("disk at %q", disk.Source.File.File)
	}
	if disk.BackingStore == nil || (disk.BackingStore.Source != nil && disk.BackingStore.Source.File != nil) {
		t.Errorf("the copied disk keeps a backing chain: %+v", disk.BackingStore)
	}
	if d.Devices.Disks[1].Source.File.File != "/state2/vms/u1/seed-seed.iso" {
		t.Errorf("seed at %q", d.Devices.Disks[1].Source.File.File)
	}
	if got := d.Devices.Serials[0].Log.File; got != "/state2/vms/u1/console.log" {
		t.Errorf("console log at %q", got)
	}
	nic := d.Devices.Interfaces[0]
	if nic.Source.Bridge.Bridge != "vbr-dst" || nic.Target.Dev != "vtap-dst" {
		t.Errorf("interface on %q/%q, want the target's bridge and tap", nic.Source.Bridge.Bridge, nic.Target.Dev)
	}
	if strings.Contains(out, "/state1/") {
		t.Errorf("a source path is left:\n%s", out)
	}
}
