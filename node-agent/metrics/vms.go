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
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// statsTimeout bounds the libvirt call of one scrape.
const statsTimeout = 10 * time.Second

var vmLabels = []string{"namespace", "name", "uid"}

// desc is a metric of every VM, with the VM's labels and extra ones.
func desc(name, help string, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, append(append([]string{}, vmLabels...), extra...), nil)
}

// The per-VM metrics. Units are Prometheus' base units: seconds and
// bytes; libvirt's nanoseconds and KiB are converted.
var (
	vmState = desc("vessel_vm_state",
		"The VM's domain state as libvirt reports it: 1 for the current state, 0 for the others.", "state")
	vmCPU = desc("vessel_vm_cpu_seconds_total",
		"Host CPU time used by the VM's QEMU process, all threads (vCPUs, emulator, I/O).")
	vmCPUUser = desc("vessel_vm_cpu_user_seconds_total",
		"Host CPU time used by the VM's QEMU process in user mode.")
	vmCPUSystem = desc("vessel_vm_cpu_system_seconds_total",
		"Host CPU time used by the VM's QEMU process in kernel mode.")
	vmVCPU = desc("vessel_vm_vcpu_seconds_total",
		"Host CPU time spent running one virtual CPU.", "vcpu")
	vmVCPUWait = desc("vessel_vm_vcpu_wait_seconds_total",
		"Time one virtual CPU was ready to run but waited for a host CPU (steal time, as the guest sees it).", "vcpu")
	vmMemActual = desc("vessel_vm_memory_actual_bytes",
		"Memory the guest currently has (its balloon's size, or its configured memory without a balloon).")
	vmMemMaximum = desc("vessel_vm_memory_maximum_bytes",
		"Memory the guest may have at most.")
	vmMemRSS = desc("vessel_vm_memory_rss_bytes",
		"Host memory resident in the VM's QEMU process: what the VM costs the host.")
	vmMemAvailable = desc("vessel_vm_memory_available_bytes",
		"Memory the guest kernel sees in total, as its balloon driver reports it.")
	vmMemUsable = desc("vessel_vm_memory_usable_bytes",
		"Memory the guest could use without swapping, as its balloon driver reports it.")
	vmMemUnused = desc("vessel_vm_memory_unused_bytes",
		"Memory the guest leaves entirely unused, as its balloon driver reports it.")
	vmDiskReadBytes = desc("vessel_vm_disk_read_bytes_total",
		"Bytes the guest read from one disk.", "disk")
	vmDiskWrittenBytes = desc("vessel_vm_disk_written_bytes_total",
		"Bytes the guest wrote to one disk.", "disk")
	vmDiskReads = desc("vessel_vm_disk_reads_total",
		"Read requests the guest completed on one disk.", "disk")
	vmDiskWrites = desc("vessel_vm_disk_writes_total",
		"Write requests the guest completed on one disk.", "disk")
	vmDiskFlushes = desc("vessel_vm_disk_flushes_total",
		"Flush requests the guest completed on one disk.", "disk")
	vmDiskReadTime = desc("vessel_vm_disk_read_time_seconds_total",
		"Time read requests on one disk took, summed: divided by the reads, the mean read latency.", "disk")
	vmDiskWriteTime = desc("vessel_vm_disk_write_time_seconds_total",
		"Time write requests on one disk took, summed: divided by the writes, the mean write latency.", "disk")
	vmDiskFlushTime = desc("vessel_vm_disk_flush_time_seconds_total",
		"Time flush requests on one disk took, summed.", "disk")
	vmDiskCapacity = desc("vessel_vm_disk_capacity_bytes",
		"Size of one disk as the guest sees it.", "disk")
	vmDiskAllocation = desc("vessel_vm_disk_allocation_bytes",
		"Host storage one disk's image file takes.", "disk")
	vmNetRxBytes = desc("vessel_vm_network_receive_bytes_total",
		"Bytes the guest received on one interface.", "interface")
	vmNetTxBytes = desc("vessel_vm_network_transmit_bytes_total",
		"Bytes the guest sent on one interface.", "interface")
	vmNetRxPackets = desc("vessel_vm_network_receive_packets_total",
		"Packets the guest received on one interface.", "interface")
	vmNetTxPackets = desc("vessel_vm_network_transmit_packets_total",
		"Packets the guest sent on one interface.", "interface")
	vmNetRxErrors = desc("vessel_vm_network_receive_errors_total",
		"Receive errors on one interface.", "interface")
	vmNetTxErrors = desc("vessel_vm_network_transmit_errors_total",
		"Transmit errors on one interface.", "interface")
	vmNetRxDrops = desc("vessel_vm_network_receive_drops_total",
		"Packets for the guest dropped on one interface.", "interface")
	vmNetTxDrops = desc("vessel_vm_network_transmit_drops_total",
		"Packets from the guest dropped on one interface.", "interface")

	libvirtUp = prometheus.NewDesc("vessel_agent_libvirt_up",
		"1 when the agent's last bulk statistics call to libvirtd succeeded, 0 when libvirtd is unreachable or failed it.", nil, nil)
	libvirtStatsDuration = prometheus.NewDesc("vessel_agent_libvirt_stats_duration_seconds",
		"How long the bulk statistics call to libvirtd of this scrape took.", nil, nil)
	vmsReported = prometheus.NewDesc("vessel_agent_vms",
		"VMs bound to this hypervisor that have a libvirt domain (the VMs this scrape reports).", nil, nil)
)

// stateNames are the values of vessel_vm_state's state label, every one
// reported for every VM so that a query can watch for any of them.
var stateNames = []struct {
	state hypervisor.State
	label string
}{
	{hypervisor.StateRunning, "running"},
	{hypervisor.StatePaused, "paused"},
	{hypervisor.StateShutdown, "shutting_down"},
	{hypervisor.StateShutoff, "shutoff"},
	{hypervisor.StateCrashed, "crashed"},
	{hypervisor.StateOther, "other"},
}

// VMCollector reports every VM bound to this hypervisor from one bulk
// statistics call per scrape. Domains of VMs the agent does not know
// (other control planes', foreign ones) are left out.
type VMCollector struct {
	stats hypervisor.StatsReader
	vms   listers.VirtualMachineLister
}

var _ prometheus.Collector = &VMCollector{}

// NewVMCollector reads stats for the VMs vms lists (the agent's informer,
// filtered to this node).
func NewVMCollector(stats hypervisor.StatsReader, vms listers.VirtualMachineLister) *VMCollector {
	return &VMCollector{stats: stats, vms: vms}
}

// Describe implements prometheus.Collector.
func (c *VMCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		vmState, vmCPU, vmCPUUser, vmCPUSystem, vmVCPU, vmVCPUWait,
		vmMemActual, vmMemMaximum, vmMemRSS, vmMemAvailable, vmMemUsable, vmMemUnused,
		vmDiskReadBytes, vmDiskWrittenBytes, vmDiskReads, vmDiskWrites, vmDiskFlushes,
		vmDiskReadTime, vmDiskWriteTime, vmDiskFlushTime, vmDiskCapacity, vmDiskAllocation,
		vmNetRxBytes, vmNetTxBytes, vmNetRxPackets, vmNetTxPackets,
		vmNetRxErrors, vmNetTxErrors, vmNetRxDrops, vmNetTxDrops,
		libvirtUp, libvirtStatsDuration, vmsReported,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A failed libvirt call is
// reported as vessel_agent_libvirt_up 0 and no VM series, not as a failed
// scrape: the agent's own health is what an operator needs most then.
func (c *VMCollector) Collect(ch chan<- prometheus.Metric) {
	owned, doms, took, err := c.read()
	if err != nil {
		klog.Background().V(2).Info("Reading domain statistics for metrics failed", "err", err)
		ch <- prometheus.MustNewConstMetric(libvirtUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(libvirtUp, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(libvirtStatsDuration, prometheus.GaugeValue, took.Seconds())
	n := 0
	for i := range doms {
		vm := owned[doms[i].UUID]
		if vm == nil {
			continue
		}
		n++
		collectVM(ch, vm, &doms[i])
	}
	ch <- prometheus.MustNewConstMetric(vmsReported, prometheus.GaugeValue, float64(n))
}

// read lists this node's VMs by UID and takes the statistics of every domain.
func (c *VMCollector) read() (map[string]*v1alpha1.VirtualMachine, []hypervisor.DomainStats, time.Duration, error) {
	list, err := c.vms.List(labels.Everything())
	if err != nil {
		return nil, nil, 0, err
	}
	owned := make(map[string]*v1alpha1.VirtualMachine, len(list))
	for _, vm := range list {
		owned[string(vm.UID)] = vm
	}
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	start := time.Now()
	doms, err := c.stats.AllDomainStats(ctx)
	return owned, doms, time.Since(start), err
}

func collectVM(ch chan<- prometheus.Metric, vm *v1alpha1.VirtualMachine, s *hypervisor.DomainStats) {
	l := []string{vm.Namespace, vm.Name, string(vm.UID)}
	gauge := func(d *prometheus.Desc, v float64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append(l, extra...)...)
	}
	counter := func(d *prometheus.Desc, v float64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append(l, extra...)...)
	}
	for _, st := range stateNames {
		v := 0.0
		if s.State == st.state {
			v = 1
		}
		gauge(vmState, v, st.label)
	}
	if s.HasCPU {
		counter(vmCPU, seconds(s.CPUTime))
		counter(vmCPUUser, seconds(s.CPUUser))
		counter(vmCPUSystem, seconds(s.CPUSys))
	}
	for _, v := range s.VCPUs {
		idx := strconv.Itoa(v.Index)
		counter(vmVCPU, seconds(v.Time), idx)
		if v.HasWait {
			counter(vmVCPUWait, seconds(v.Wait), idx)
		}
	}
	m := &s.Memory
	for _, g := range []struct {
		d   *prometheus.Desc
		has bool
		v   uint64
	}{
		{vmMemActual, m.HasActual, m.Actual},
		{vmMemMaximum, m.HasMaximum, m.Maximum},
		{vmMemRSS, m.HasRSS, m.RSS},
		{vmMemAvailable, m.HasAvailable, m.Available},
		{vmMemUsable, m.HasUsable, m.Usable},
		{vmMemUnused, m.HasUnused, m.Unused},
	} {
		if g.has {
			gauge(g.d, float64(g.v))
		}
	}
	for i := range s.Disks {
		d := &s.Disks[i]
		if d.Name == "" {
			continue
		}
		counter(vmDiskReadBytes, float64(d.ReadBytes), d.Name)
		counter(vmDiskWrittenBytes, float64(d.WriteBytes), d.Name)
		counter(vmDiskReads, float64(d.ReadOps), d.Name)
		counter(vmDiskWrites, float64(d.WriteOps), d.Name)
		counter(vmDiskFlushes, float64(d.FlushOps), d.Name)
		counter(vmDiskReadTime, seconds(d.ReadTime), d.Name)
		counter(vmDiskWriteTime, seconds(d.WriteTime), d.Name)
		counter(vmDiskFlushTime, seconds(d.FlushTime), d.Name)
		if d.HasCapacity {
			gauge(vmDiskCapacity, float64(d.Capacity), d.Name)
		}
		if d.HasAllocation {
			gauge(vmDiskAllocation, float64(d.Allocation), d.Name)
		}
	}
	for i := range s.Interfaces {
		n := &s.Interfaces[i]
		if n.Name == "" {
			continue
		}
		counter(vmNetRxBytes, float64(n.RxBytes), n.Name)
		counter(vmNetTxBytes, float64(n.TxBytes), n.Name)
		counter(vmNetRxPackets, float64(n.RxPackets), n.Name)
		counter(vmNetTxPackets, float64(n.TxPackets), n.Name)
		counter(vmNetRxErrors, float64(n.RxErrors), n.Name)
		counter(vmNetTxErrors, float64(n.TxErrors), n.Name)
		counter(vmNetRxDrops, float64(n.RxDrops), n.Name)
		counter(vmNetTxDrops, float64(n.TxDrops), n.Name)
	}
}

// seconds converts libvirt's nanoseconds.
func seconds(ns uint64) float64 { return float64(ns) / 1e9 }
