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
	"reflect"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
)

func TestParseDomainStats(t *testing.T) {
	uid := uuid.MustParse("6f1c7f43-2f4e-4a57-9d0e-3f1a2b3c4d5e")
	p := func(field string, v any) golibvirt.TypedParam {
		return golibvirt.TypedParam{Field: field, Value: golibvirt.TypedParamValue{I: v}}
	}
	// What libvirt 9 returns for a running TCG guest with one virtio disk
	// and one user-mode NIC, shuffled a little and with fields we skip.
	params := []golibvirt.TypedParam{
		p("state.state", int32(golibvirt.DomainRunning)),
		p("state.reason", int32(1)),
		p("cpu.time", uint64(2_500_000_000)),
		p("cpu.user", uint64(2_000_000_000)),
		p("cpu.system", uint64(400_000_000)),
		p("cpu.haltpoll.success.time", uint64(7)),
		p("balloon.current", uint64(131072)),
		p("balloon.maximum", uint64(131072)),
		p("balloon.rss", uint64(200000)),
		p("balloon.last-update", uint64(0)),
		p("vcpu.current", uint32(2)),
		p("vcpu.maximum", uint32(2)),
		p("vcpu.1.state", int32(1)),
		p("vcpu.1.time", uint64(900)),
		p("vcpu.0.state", int32(1)),
		p("vcpu.0.time", uint64(1000)),
		p("vcpu.0.wait", uint64(5)),
		p("net.count", uint32(1)),
		p("net.0.name", "vnet0"),
		p("net.0.rx.bytes", uint64(10)),
		p("net.0.rx.pkts", uint64(1)),
		p("net.0.rx.errs", uint64(0)),
		p("net.0.rx.drop", uint64(2)),
		p("net.0.tx.bytes", uint64(20)),
		p("net.0.tx.pkts", uint64(3)),
		p("net.0.tx.errs", uint64(0)),
		p("net.0.tx.drop", uint64(0)),
		p("block.count", uint32(1)),
		p("block.0.name", "vda"),
		p("block.0.path", "/var/lib/vessel/agent/vms/x/disk-0.qcow2"),
		p("block.0.rd.reqs", uint64(100)),
		p("block.0.rd.bytes", uint64(409600)),
		p("block.0.rd.times", uint64(3_000_000)),
		p("block.0.wr.reqs", uint64(10)),
		p("block.0.wr.bytes", uint64(40960)),
		p("block.0.wr.times", uint64(1_000_000)),
		p("block.0.fl.reqs", uint64(4)),
		p("block.0.fl.times", uint64(8000)),
		p("block.0.allocation", uint64(1<<20)),
		p("block.0.capacity", uint64(1<<30)),
		p("block.0.physical", uint64(1<<20)),
		p("block.x.rd.bytes", uint64(1)), // malformed index: skipped
	}
	got := parseDomainStats(golibvirt.UUID(uid), params)
	want := DomainStats{
		UUID:    uid.String(),
		State:   StateRunning,
		HasCPU:  true,
		CPUTime: 2_500_000_000, CPUUser: 2_000_000_000, CPUSys: 400_000_000,
		VCPUs: []VCPUStats{{Index: 0, Time: 1000, Wait: 5, HasWait: true}, {Index: 1, Time: 900}},
		Memory: MemoryStats{
			HasActual: true, Actual: 128 << 20,
			HasMaximum: true, Maximum: 128 << 20,
			HasRSS: true, RSS: 200000 * 1024,
		},
		Disks: []DiskStats{{
			Name:      "vda",
			ReadBytes: 409600, ReadOps: 100, ReadTime: 3_000_000,
			WriteBytes: 40960, WriteOps: 10, WriteTime: 1_000_000,
			FlushOps: 4, FlushTime: 8000,
			HasCapacity: true, Capacity: 1 << 30, HasAllocation: true, Allocation: 1 << 20,
		}},
		Interfaces: []InterfaceStats{{Name: "vnet0", RxBytes: 10, RxPackets: 1, RxDrops: 2, TxBytes: 20, TxPackets: 3}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseDomainStats:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseDomainStatsInactive(t *testing.T) {
	got := parseDomainStats(golibvirt.UUID{}, []golibvirt.TypedParam{
		{Field: "state.state", Value: golibvirt.TypedParamValue{I: int32(golibvirt.DomainShutoff)}},
		{Field: "state.reason", Value: golibvirt.TypedParamValue{I: int32(golibvirt.DomainShutoffShutdown)}},
	})
	if got.State != StateShutoff || got.HasCPU || got.Memory.HasRSS || len(got.Disks) != 0 {
		t.Errorf("an inactive domain reports only its state, got %+v", got)
	}
}

func TestParseDomainStatsBoundsIndexes(t *testing.T) {
	got := parseDomainStats(golibvirt.UUID{}, []golibvirt.TypedParam{
		{Field: "block.999999999.rd.bytes", Value: golibvirt.TypedParamValue{I: uint64(1)}},
	})
	if len(got.Disks) != 0 {
		t.Errorf("an absurd disk index must be skipped, got %d disks", len(got.Disks))
	}
}
