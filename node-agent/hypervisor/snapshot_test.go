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
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"
)

func testDomainXML(t *testing.T, disks []DiskConfig) string {
	t.Helper()
	x, err := DomainXML(&DomainConfig{
		Owner: Owner{Namespace: "ns", Name: "vm", UID: "6f1c5c8e-0c1e-4c4b-9a8e-2f0d8c3b7a11", Hypervisor: "hv"},
		CPUs:  1, MemoryKiB: 96 * 1024, Kernel: "/k", Disks: disks,
	})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestSnapshotXMLIsInternalForWritableQcow2DisksOnly(t *testing.T) {
	domXML := testDomainXML(t, []DiskConfig{
		{Name: "root", Path: "/vms/u/disk-root.qcow2", Format: "qcow2"},
		{Name: "data", Path: "/vms/u/disk-data.qcow2", Format: "qcow2"},
		{Name: "ro", Path: "/images/ro.raw", Format: "raw", ReadOnly: true},
		{Name: "seed", Path: "/vms/u/seed-seed.iso", Format: "raw", CDROM: true},
	})
	x, files, err := snapshotXML(domXML, SnapshotSpec{Name: "uid-1", Description: "vessel.dev snapshot"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/vms/u/disk-root.qcow2", "/vms/u/disk-data.qcow2"}; !slices.Equal(files, want) {
		t.Errorf("files = %v, want %v", files, want)
	}
	var s libvirtxml.DomainSnapshot
	if err := s.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	if s.Name != "uid-1" || s.Description != "vessel.dev snapshot" {
		t.Errorf("name/description: %q %q", s.Name, s.Description)
	}
	if s.Memory != nil {
		t.Errorf("memory element %+v: libvirt's default (internal for an active domain) must be kept", s.Memory)
	}
	modes := map[string]string{}
	for _, d := range s.Disks.Disks {
		modes[d.Name] = d.Snapshot
	}
	want := map[string]string{"vda": "internal", "vdb": "internal", "vdc": "no", "hdc": "no"}
	for dev, mode := range want {
		if modes[dev] != mode {
			t.Errorf("disk %s snapshot=%q, want %q (all: %v)", dev, modes[dev], mode, modes)
		}
	}
	if strings.Contains(x, "external") {
		t.Errorf("an external snapshot was requested:\n%s", x)
	}
}

func TestSnapshotXMLRefusesWritableRawDisks(t *testing.T) {
	domXML := testDomainXML(t, []DiskConfig{
		{Name: "root", Path: "/vms/u/disk-root.qcow2", Format: "qcow2"},
		{Name: "scratch", Path: "/images/scratch.img", Format: "raw"},
	})
	_, _, err := snapshotXML(domXML, SnapshotSpec{Name: "x"})
	if !errors.Is(err, ErrSnapshotUnsupported) || !strings.Contains(err.Error(), `disk "scratch" (vdb) is raw`) {
		t.Errorf("err = %v, want ErrSnapshotUnsupported naming disk scratch", err)
	}
	_, _, err = snapshotXML(testDomainXML(t, nil), SnapshotSpec{Name: "x"})
	if !errors.Is(err, ErrSnapshotUnsupported) {
		t.Errorf("diskless domain: err = %v, want ErrSnapshotUnsupported", err)
	}
}

func TestParseSnapshot(t *testing.T) {
	for _, tc := range []struct {
		xml    string
		state  State
		memory bool
	}{
		{`<domainsnapshot><name>a</name><description>d</description><state>running</state><creationTime>1795650531</creationTime><memory snapshot='internal'/></domainsnapshot>`, StateRunning, true},
		{`<domainsnapshot><name>a</name><state>paused</state><creationTime>1795650531</creationTime><memory snapshot='internal'/></domainsnapshot>`, StatePaused, true},
		{`<domainsnapshot><name>a</name><state>shutoff</state><creationTime>1795650531</creationTime><memory snapshot='no'/></domainsnapshot>`, StateShutoff, false},
	} {
		s, err := parseSnapshot(tc.xml)
		if err != nil {
			t.Fatal(err)
		}
		if s.Name != "a" || s.State != tc.state || s.Memory != tc.memory || !s.CreationTime.Equal(time.Unix(1795650531, 0)) {
			t.Errorf("parseSnapshot(%s) = %+v", tc.xml, s)
		}
	}
}
