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
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The launcher assigns each hypervisor its namespace, fabric address and
// host UUID once, and keeps them: a restarted libvirtd must find the same
// namespace, and the addresses are what migration will use.
func TestHypervisorPlanIsAssignedOnceAndKept(t *testing.T) {
	l := testLayout(t)
	first, err := ensurePlan(l, []string{"hv-a", "hv-b"})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := first.get("hv-a")
	b, _ := first.get("hv-b")
	if a.Index != 1 || b.Index != 2 {
		t.Errorf("indexes %d, %d; want 1, 2", a.Index, b.Index)
	}
	if a.Address.String() != "10.250.0.11/24" || b.Address.String() != "10.250.0.12/24" {
		t.Errorf("addresses %s, %s; want 10.250.0.11/24, 10.250.0.12/24", a.Address, b.Address)
	}
	if a.Netns != "vessel-"+first.ID+"-1" || b.Netns != "vessel-"+first.ID+"-2" || first.FabricNetns != "vessel-"+first.ID+"-fabric" {
		t.Errorf("namespaces %s, %s, fabric %s", a.Netns, b.Netns, first.FabricNetns)
	}
	if a.HostUUID == b.HostUUID || a.HostUUID == "" {
		t.Errorf("host UUIDs %q and %q: want two distinct ones", a.HostUUID, b.HostUUID)
	}
	if a.Dir != filepath.Join(l.root, "hypervisors", "hv-a") || a.Socket() != filepath.Join(l.root, "hypervisors", "hv-a", "run", "libvirt-sock") {
		t.Errorf("hv-a lives in %s, socket %s", a.Dir, a.Socket())
	}
	for _, hv := range []Hypervisor{a, b} {
		if err := hv.LibvirtHost().Validate(); err != nil {
			t.Error(err)
		}
	}

	// Another start, with one more hypervisor and in another order: the
	// first two keep everything, the new one takes the next index.
	again, err := ensurePlan(l, []string{"hv-c", "hv-b", "hv-a"})
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID {
		t.Errorf("ID changed from %s to %s", first.ID, again.ID)
	}
	for _, hv := range []Hypervisor{a, b} {
		if got, _ := again.get(hv.Name); got != hv {
			t.Errorf("%s changed: %+v, then %+v", hv.Name, hv, got)
		}
	}
	if c, _ := again.get("hv-c"); c.Index != 3 || c.Address.String() != "10.250.0.13/24" {
		t.Errorf("hv-c: %+v, want index 3 at 10.250.0.13/24", c)
	}

	// Another state directory has namespaces of its own.
	other, err := ensurePlan(testLayout(t), []string{"hv-a"})
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == first.ID {
		t.Errorf("two state directories share the namespace ID %s", first.ID)
	}
}

func TestStopOrder(t *testing.T) {
	l := testLayout(t)
	for _, name := range []string{"etcd", "kube-apiserver", "virtlogd@h-1", "libvirtd@h-1", "vessel-agent@h-1", "vessel-agent@h-2", "libvirtd@h-2", "virtlogd@h-2", "vessel-apiserver", "supervisor"} {
		if err := os.WriteFile(l.pidFile(name), []byte("1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, f := range pidFilesInStopOrder(l) {
		got = append(got, strings.TrimSuffix(filepath.Base(f), ".pid"))
	}
	want := []string{"supervisor", "vessel-agent@h-1", "vessel-agent@h-2", "libvirtd@h-1", "libvirtd@h-2", "virtlogd@h-1", "virtlogd@h-2",
		"vessel-apiserver", "kube-controller-manager", "kube-apiserver", "etcd"}
	if !slices.Equal(got, want) {
		t.Errorf("stop order\n%v\nwant\n%v", got, want)
	}
}

func TestComponentNames(t *testing.T) {
	got := componentNames(Options{Hypervisors: []string{"h-1", "h-2"}})
	want := []string{"etcd", "kube-apiserver", "kube-controller-manager", "vessel-apiserver",
		"virtlogd@h-1", "libvirtd@h-1", "vessel-agent@h-1", "virtlogd@h-2", "libvirtd@h-2", "vessel-agent@h-2"}
	if !slices.Equal(got, want) {
		t.Errorf("components\n%v\nwant\n%v", got, want)
	}
	if got := componentNames(Options{NoAgent: true, Hypervisors: []string{"h-1"}}); !slices.Equal(got, startOrder) {
		t.Errorf("components without agents: %v", got)
	}
}
