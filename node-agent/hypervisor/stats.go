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
	"context"
	"fmt"
	"strconv"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// StatsReader reads the counters of every domain in one call. It is
// optional: a hypervisor without it has no per-VM metrics.
type StatsReader interface {
	// AllDomainStats returns the statistics of every domain libvirt knows,
	// owned by Vessel or not (callers keep the ones they know by UUID).
	// Every counter is cumulative since the domain's QEMU process started.
	AllDomainStats(ctx context.Context) ([]DomainStats, error)
}

var _ StatsReader = &Libvirt{}

// DomainStats is one domain's statistics. Counters QEMU did not report
// (an inactive domain has none; the balloon figures need a guest driver)
// are absent: their Has* flag is false or their slice is empty.
type DomainStats struct {
	UUID  string
	State State

	// HasCPU says the CPU times are set: nanoseconds of host CPU used by
	// all the domain's threads, and that split into user and system time.
	HasCPU                   bool
	CPUTime, CPUUser, CPUSys uint64
	VCPUs                    []VCPUStats
	Memory                   MemoryStats
	Disks                    []DiskStats
	Interfaces               []InterfaceStats
}

// VCPUStats is one virtual CPU's time, in nanoseconds.
type VCPUStats struct {
	Index int
	Time  uint64
	// Wait is the time the vCPU was runnable but not running (steal, as
	// the guest sees it); HasWait says the host reports it.
	Wait    uint64
	HasWait bool
}

// MemoryStats are the memory figures, in bytes. Actual and Maximum come from
// the domain's definition and RSS from the host, for every running domain;
// Available, Usable and Unused only when the guest's balloon driver reports
// them.
type MemoryStats struct {
	HasActual, HasMaximum, HasRSS bool
	Actual, Maximum, RSS          uint64

	HasAvailable, HasUsable, HasUnused bool
	Available, Usable, Unused          uint64
}

// DiskStats are one disk's counters; times are in nanoseconds.
type DiskStats struct {
	Name                            string
	ReadBytes, ReadOps, ReadTime    uint64
	WriteBytes, WriteOps, WriteTime uint64
	FlushOps, FlushTime             uint64
	HasCapacity, HasAllocation      bool
	Capacity, Allocation            uint64
}

// InterfaceStats are one network interface's counters.
type InterfaceStats struct {
	Name                                  string
	RxBytes, RxPackets, RxErrors, RxDrops uint64
	TxBytes, TxPackets, TxErrors, TxDrops uint64
}

// statsGroups are the groups of counters asked for: everything the metrics
// expose, nothing more (no perf events, no dirty-rate sampling).
const statsGroups = golibvirt.DomainStatsState | golibvirt.DomainStatsCPUTotal | golibvirt.DomainStatsBalloon |
	golibvirt.DomainStatsVCPU | golibvirt.DomainStatsInterface | golibvirt.DomainStatsBlock

// AllDomainStats implements StatsReader with one
// virConnectGetAllDomainStats call. NOWAIT keeps a scrape from queueing
// behind a long domain job (a snapshot): such a domain reports what needs
// no job this time.
func (l *Libvirt) AllDomainStats(ctx context.Context) ([]DomainStats, error) {
	c, err := l.client()
	if err != nil {
		return nil, err
	}
	records, err := c.ConnectGetAllDomainStats(nil, uint32(statsGroups), uint32(golibvirt.ConnectGetAllDomainsStatsNowait))
	if err != nil {
		return nil, fmt.Errorf("get all domain stats: %w", err)
	}
	out := make([]DomainStats, len(records))
	for i := range records {
		out[i] = parseDomainStats(records[i].Dom.UUID, records[i].Params)
	}
	return out, nil
}

// parseDomainStats turns libvirt's flat typed parameters ("cpu.time",
// "block.0.rd.bytes", ...) into a DomainStats. Unknown fields are skipped:
// newer libvirts add some.
func parseDomainStats(uid golibvirt.UUID, params []golibvirt.TypedParam) DomainStats {
	s := DomainStats{UUID: uuidString(uid), State: StateOther}
	var state, reason int32
	for _, p := range params {
		group, rest, _ := strings.Cut(p.Field, ".")
		switch group {
		case "state":
			switch rest {
			case "state":
				state = int32(paramUint(p.Value))
			case "reason":
				reason = int32(paramUint(p.Value))
			}
		case "cpu":
			switch rest {
			case "time":
				s.HasCPU, s.CPUTime = true, paramUint(p.Value)
			case "user":
				s.CPUUser = paramUint(p.Value)
			case "system":
				s.CPUSys = paramUint(p.Value)
			}
		case "balloon":
			parseBalloon(&s.Memory, rest, paramUint(p.Value))
		case "vcpu":
			i, field, ok := indexed(rest)
			if !ok {
				continue
			}
			v := at(&s.VCPUs, i)
			v.Index = i
			switch field {
			case "time":
				v.Time = paramUint(p.Value)
			case "wait":
				v.Wait, v.HasWait = paramUint(p.Value), true
			}
		case "block":
			i, field, ok := indexed(rest)
			if !ok {
				continue
			}
			parseDisk(at(&s.Disks, i), field, p.Value)
		case "net":
			i, field, ok := indexed(rest)
			if !ok {
				continue
			}
			parseInterface(at(&s.Interfaces, i), field, p.Value)
		}
	}
	s.State, _ = mapState(golibvirt.DomainState(state), reason)
	return s
}

// parseBalloon reads a balloon.* field; libvirt reports them in KiB.
func parseBalloon(m *MemoryStats, field string, kib uint64) {
	b := kib * 1024
	switch field {
	case "current":
		m.Actual, m.HasActual = b, true
	case "maximum":
		m.Maximum, m.HasMaximum = b, true
	case "rss":
		m.RSS, m.HasRSS = b, true
	case "available":
		m.Available, m.HasAvailable = b, true
	case "usable":
		m.Usable, m.HasUsable = b, true
	case "unused":
		m.Unused, m.HasUnused = b, true
	}
}

func parseDisk(d *DiskStats, field string, v golibvirt.TypedParamValue) {
	switch field {
	case "name":
		d.Name, _ = v.I.(string)
	case "rd.bytes":
		d.ReadBytes = paramUint(v)
	case "rd.reqs":
		d.ReadOps = paramUint(v)
	case "rd.times":
		d.ReadTime = paramUint(v)
	case "wr.bytes":
		d.WriteBytes = paramUint(v)
	case "wr.reqs":
		d.WriteOps = paramUint(v)
	case "wr.times":
		d.WriteTime = paramUint(v)
	case "fl.reqs":
		d.FlushOps = paramUint(v)
	case "fl.times":
		d.FlushTime = paramUint(v)
	case "capacity":
		d.Capacity, d.HasCapacity = paramUint(v), true
	case "allocation":
		d.Allocation, d.HasAllocation = paramUint(v), true
	}
}

func parseInterface(n *InterfaceStats, field string, v golibvirt.TypedParamValue) {
	switch field {
	case "name":
		n.Name, _ = v.I.(string)
	case "rx.bytes":
		n.RxBytes = paramUint(v)
	case "rx.pkts":
		n.RxPackets = paramUint(v)
	case "rx.errs":
		n.RxErrors = paramUint(v)
	case "rx.drop":
		n.RxDrops = paramUint(v)
	case "tx.bytes":
		n.TxBytes = paramUint(v)
	case "tx.pkts":
		n.TxPackets = paramUint(v)
	case "tx.errs":
		n.TxErrors = paramUint(v)
	case "tx.drop":
		n.TxDrops = paramUint(v)
	}
}

// indexed splits "3.rd.bytes" into 3 and "rd.bytes". Counts ("count",
// "current", "maximum") are not indexed and are skipped: the slices grow
// to the highest index seen.
func indexed(s string) (int, string, bool) {
	idx, field, ok := strings.Cut(s, ".")
	if !ok {
		return 0, "", false
	}
	i, err := strconv.Atoi(idx)
	if err != nil || i < 0 || i > maxIndexed {
		return 0, "", false
	}
	return i, field, true
}

// maxIndexed bounds the disks, interfaces and vCPUs read from one domain,
// so a malformed reply cannot make the agent allocate without bound.
const maxIndexed = 4096

// at returns the i-th element of *s, growing it as needed.
func at[T any](s *[]T, i int) *T {
	for len(*s) <= i {
		var zero T
		*s = append(*s, zero)
	}
	return &(*s)[i]
}

// paramUint reads any integer typed parameter as a uint64 (negative
// values, which counters never have, as 0).
func paramUint(v golibvirt.TypedParamValue) uint64 {
	switch x := v.I.(type) {
	case uint64:
		return x
	case uint32:
		return uint64(x)
	case int64:
		return uint64(max(x, 0))
	case int32:
		return uint64(max(x, 0))
	case float64:
		return uint64(max(x, 0))
	}
	return 0
}
