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

package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

const (
	uidA       = "11111111-1111-1111-1111-111111111111"
	uidB       = "22222222-2222-2222-2222-222222222222"
	uidForeign = "33333333-3333-3333-3333-333333333333"
)

// fakeStats is a StatsReader with fixed answers; calls counts them.
type fakeStats struct {
	mu    sync.Mutex
	doms  []hypervisor.DomainStats
	err   error
	calls int
}

func (f *fakeStats) AllDomainStats(context.Context) ([]hypervisor.DomainStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.doms, f.err
}

func vmLister(t *testing.T, vms ...*v1alpha1.VirtualMachine) listers.VirtualMachineLister {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, vm := range vms {
		if err := idx.Add(vm); err != nil {
			t.Fatal(err)
		}
	}
	return listers.NewVirtualMachineLister(idx)
}

func vmObject(ns, name, uid string) *v1alpha1.VirtualMachine {
	return &v1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}}
}

// twoGuests are a running guest with a disk and a NIC, a stopped one, and a
// domain of another control plane on the same libvirtd.
func twoGuests() []hypervisor.DomainStats {
	return []hypervisor.DomainStats{
		{
			UUID: uidA, State: hypervisor.StateRunning,
			HasCPU: true, CPUTime: 3_500_000_000, CPUUser: 3_000_000_000, CPUSys: 500_000_000,
			VCPUs: []hypervisor.VCPUStats{{Index: 0, Time: 3_000_000_000, Wait: 1_000_000, HasWait: true}},
			Memory: hypervisor.MemoryStats{
				HasActual: true, Actual: 128 << 20, HasMaximum: true, Maximum: 128 << 20,
				HasRSS: true, RSS: 180 << 20,
			},
			Disks: []hypervisor.DiskStats{{
				Name: "vda", ReadBytes: 4096, ReadOps: 1, ReadTime: 2_000_000,
				WriteBytes: 1 << 20, WriteOps: 8, WriteTime: 16_000_000, FlushOps: 1, FlushTime: 500_000,
				HasCapacity: true, Capacity: 1 << 30, HasAllocation: true, Allocation: 2 << 20,
			}},
			Interfaces: []hypervisor.InterfaceStats{{Name: "vnet3", RxBytes: 1500, RxPackets: 1, TxBytes: 3000, TxPackets: 2, TxDrops: 1}},
		},
		{UUID: uidB, State: hypervisor.StateShutoff},
		{UUID: uidForeign, State: hypervisor.StateRunning, HasCPU: true, CPUTime: 9e9},
	}
}

func TestVMCollectorReportsOwnVMsFromOneCall(t *testing.T) {
	stats := &fakeStats{doms: twoGuests()}
	reg := NewRegistry(Options{Hypervisor: "hv-1", Version: "v1.2.3"})
	if err := reg.AddVMs(stats, vmLister(t, vmObject("team-a", "busy", uidA), vmObject("team-b", "stopped", uidB))); err != nil {
		t.Fatal(err)
	}
	// Labels print sorted: ..., name, namespace, state, uid, vcpu.
	want := strings.NewReplacer("A,", `name="busy",namespace="team-a",`, "B,", `name="stopped",namespace="team-b",`,
		"UA", `uid="`+uidA+`"`, "UB", `uid="`+uidB+`"`).Replace(`
# HELP vessel_vm_cpu_seconds_total Host CPU time used by the VM's QEMU process, all threads (vCPUs, emulator, I/O).
# TYPE vessel_vm_cpu_seconds_total counter
vessel_vm_cpu_seconds_total{hypervisor="hv-1",A,UA} 3.5
# HELP vessel_vm_vcpu_seconds_total Host CPU time spent running one virtual CPU.
# TYPE vessel_vm_vcpu_seconds_total counter
vessel_vm_vcpu_seconds_total{hypervisor="hv-1",A,UA,vcpu="0"} 3
# HELP vessel_vm_memory_rss_bytes Host memory resident in the VM's QEMU process: what the VM costs the host.
# TYPE vessel_vm_memory_rss_bytes gauge
vessel_vm_memory_rss_bytes{hypervisor="hv-1",A,UA} 1.8874368e+08
# HELP vessel_vm_disk_written_bytes_total Bytes the guest wrote to one disk.
# TYPE vessel_vm_disk_written_bytes_total counter
vessel_vm_disk_written_bytes_total{disk="vda",hypervisor="hv-1",A,UA} 1.048576e+06
# HELP vessel_vm_disk_write_time_seconds_total Time write requests on one disk took, summed: divided by the writes, the mean write latency.
# TYPE vessel_vm_disk_write_time_seconds_total counter
vessel_vm_disk_write_time_seconds_total{disk="vda",hypervisor="hv-1",A,UA} 0.016
# HELP vessel_vm_network_transmit_bytes_total Bytes the guest sent on one interface.
# TYPE vessel_vm_network_transmit_bytes_total counter
vessel_vm_network_transmit_bytes_total{hypervisor="hv-1",interface="vnet3",A,UA} 3000
# HELP vessel_vm_state The VM's domain state as libvirt reports it: 1 for the current state, 0 for the others.
# TYPE vessel_vm_state gauge
vessel_vm_state{hypervisor="hv-1",A,state="crashed",UA} 0
vessel_vm_state{hypervisor="hv-1",A,state="other",UA} 0
vessel_vm_state{hypervisor="hv-1",A,state="paused",UA} 0
vessel_vm_state{hypervisor="hv-1",A,state="running",UA} 1
vessel_vm_state{hypervisor="hv-1",A,state="shutoff",UA} 0
vessel_vm_state{hypervisor="hv-1",A,state="shutting_down",UA} 0
vessel_vm_state{hypervisor="hv-1",B,state="crashed",UB} 0
vessel_vm_state{hypervisor="hv-1",B,state="other",UB} 0
vessel_vm_state{hypervisor="hv-1",B,state="paused",UB} 0
vessel_vm_state{hypervisor="hv-1",B,state="running",UB} 0
vessel_vm_state{hypervisor="hv-1",B,state="shutoff",UB} 1
vessel_vm_state{hypervisor="hv-1",B,state="shutting_down",UB} 0
# HELP vessel_agent_libvirt_up 1 when the agent's last bulk statistics call to libvirtd succeeded, 0 when libvirtd is unreachable or failed it.
# TYPE vessel_agent_libvirt_up gauge
vessel_agent_libvirt_up{hypervisor="hv-1"} 1
# HELP vessel_agent_vms VMs bound to this hypervisor that have a libvirt domain (the VMs this scrape reports).
# TYPE vessel_agent_vms gauge
vessel_agent_vms{hypervisor="hv-1"} 2
`)
	names := []string{"vessel_vm_cpu_seconds_total", "vessel_vm_vcpu_seconds_total", "vessel_vm_memory_rss_bytes",
		"vessel_vm_disk_written_bytes_total", "vessel_vm_disk_write_time_seconds_total",
		"vessel_vm_network_transmit_bytes_total", "vessel_vm_state", "vessel_agent_libvirt_up", "vessel_agent_vms"}
	if err := testutil.GatherAndCompare(reg.Gatherer(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if stats.calls != 1 {
		t.Errorf("one scrape made %d libvirt calls, want 1", stats.calls)
	}
	out := scrape(t, reg)
	if strings.Contains(out, uidForeign) {
		t.Errorf("a domain of a VM this agent does not know is reported:\n%s", out)
	}
	if strings.Contains(out, "vessel_vm_memory_available_bytes") {
		t.Errorf("a figure the guest does not report must be absent, not 0")
	}
}

func TestVMCollectorDeletedVMDisappears(t *testing.T) {
	stats := &fakeStats{doms: twoGuests()}
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	vm := vmObject("team-a", "busy", uidA)
	if err := idx.Add(vm); err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(Options{Hypervisor: "hv-1"})
	if err := reg.AddVMs(stats, listers.NewVirtualMachineLister(idx)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(scrape(t, reg), uidA) {
		t.Fatal("the VM is not reported while it exists")
	}
	// The VM is deleted; its domain may linger until the agent removes it.
	if err := idx.Delete(vm); err != nil {
		t.Fatal(err)
	}
	if out := scrape(t, reg); strings.Contains(out, uidA) {
		t.Errorf("a deleted VM's series remain:\n%s", out)
	}
}

func TestVMCollectorLibvirtDown(t *testing.T) {
	stats := &fakeStats{err: hypervisor.ErrDisconnected}
	reg := NewRegistry(Options{Hypervisor: "hv-1"})
	if err := reg.AddVMs(stats, vmLister(t, vmObject("team-a", "busy", uidA))); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP vessel_agent_libvirt_up 1 when the agent's last bulk statistics call to libvirtd succeeded, 0 when libvirtd is unreachable or failed it.
# TYPE vessel_agent_libvirt_up gauge
vessel_agent_libvirt_up{hypervisor="hv-1"} 0
`
	if err := testutil.GatherAndCompare(reg.Gatherer(), strings.NewReader(want), "vessel_agent_libvirt_up"); err != nil {
		t.Error(err)
	}
	if out := scrape(t, reg); strings.Contains(out, "vessel_vm_") {
		t.Errorf("VM series reported without libvirt:\n%s", out)
	}
}

// TestMetricsFollowPrometheusConventions lints everything the agent
// exposes with the linter `promtool check metrics` runs.
func TestMetricsFollowPrometheusConventions(t *testing.T) {
	reg := NewRegistry(Options{Hypervisor: "hv-1", Version: "v1", ConsoleSessions: func() int { return 2 }})
	stats := &fakeStats{doms: twoGuests()}
	stats.doms[0].Memory.HasAvailable, stats.doms[0].Memory.Available = true, 100<<20
	stats.doms[0].Memory.HasUsable, stats.doms[0].Memory.HasUnused = true, true
	if err := reg.AddVMs(stats, vmLister(t, vmObject("team-a", "busy", uidA), vmObject("team-b", "stopped", uidB))); err != nil {
		t.Fatal(err)
	}
	if err := reg.AddImageCache(func() (int64, int, error) { return 1 << 30, 2, nil }); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(reg.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestImageCacheErrorFailsOnlyItsSeries(t *testing.T) {
	reg := NewRegistry(Options{Hypervisor: "hv-1"})
	if err := reg.AddImageCache(func() (int64, int, error) { return 0, 0, errors.New("disk gone") }); err != nil {
		t.Fatal(err)
	}
	out := scrape(t, reg)
	if !strings.Contains(out, "vessel_agent_build_info") {
		t.Errorf("an image cache error hid the other metrics:\n%s", out)
	}
}

func TestResourceEndpoint(t *testing.T) {
	reg := NewRegistry(Options{Hypervisor: "hv-1"})
	stats := &fakeStats{doms: twoGuests()}
	if err := reg.AddVMs(stats, vmLister(t, vmObject("team-a", "busy", uidA), vmObject("team-b", "stopped", uidB))); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	reg.ResourceHandler().ServeHTTP(rec, httptest.NewRequest("GET", ResourcePath, nil))
	body, _ := io.ReadAll(rec.Body)
	out := string(body)
	for _, line := range []string{
		`vessel_vm_cpu_seconds_total{name="busy",namespace="team-a",uid="` + uidA + `"} 3.5 `,
		`vessel_vm_memory_rss_bytes{name="busy",namespace="team-a",uid="` + uidA + `"} 1.8874368e+08 `,
	} {
		if !strings.Contains(out, line) {
			t.Errorf("resource endpoint lacks %q (with a timestamp):\n%s", line, out)
		}
	}
	if strings.Contains(out, uidB) || strings.Contains(out, uidForeign) {
		t.Errorf("resource endpoint reports a stopped or foreign domain:\n%s", out)
	}

	stats.err = errors.New("libvirtd gone")
	rec = httptest.NewRecorder()
	reg.ResourceHandler().ServeHTTP(rec, httptest.NewRequest("GET", ResourcePath, nil))
	if rec.Code != 500 {
		t.Errorf("resource endpoint without libvirt answered %d, want 500 (no stale usage)", rec.Code)
	}
}

func scrape(t *testing.T, reg *Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", MetricsPath, nil))
	if rec.Code != 200 {
		t.Fatalf("scrape answered %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}
