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
	"time"

	"github.com/prometheus/client_golang/prometheus"

	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// The resource endpoint's contract with the vessel-apiserver (which parses
// it in controller/usage): two series per running VM, labelled namespace,
// name and uid, each with the time it was read, as the kubelet's
// /metrics/resource serves metrics-server.
const (
	// ResourcePath is where the agent's stream server serves them.
	ResourcePath = "/metrics/resource"
	// ResourceCPUMetric is the VM's cumulative host CPU time in seconds.
	ResourceCPUMetric = "vessel_vm_cpu_seconds_total"
	// ResourceMemoryMetric is the host memory resident in the VM's QEMU
	// process, in bytes.
	ResourceMemoryMetric = "vessel_vm_memory_rss_bytes"
)

var (
	resourceCPU = prometheus.NewDesc(ResourceCPUMetric,
		"Host CPU time used by the VM's QEMU process, all threads.", vmLabels, nil)
	resourceMemory = prometheus.NewDesc(ResourceMemoryMetric,
		"Host memory resident in the VM's QEMU process.", vmLabels, nil)
)

// resourceCollector reports CPU and memory of the running VMs bound to
// this node, timestamped, from one bulk statistics call.
type resourceCollector struct {
	vms VMCollector
}

func newResourceCollector(stats hypervisor.StatsReader, vms listers.VirtualMachineLister) *resourceCollector {
	return &resourceCollector{vms: VMCollector{stats: stats, vms: vms}}
}

func (c *resourceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- resourceCPU
	ch <- resourceMemory
}

// Collect implements prometheus.Collector; a failed libvirt call fails the
// scrape, so the apiserver keeps no stale usage for this node.
func (c *resourceCollector) Collect(ch chan<- prometheus.Metric) {
	owned, doms, _, err := c.vms.read()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(resourceCPU, err)
		return
	}
	now := time.Now()
	for i := range doms {
		s := &doms[i]
		vm := owned[s.UUID]
		if vm == nil || !s.HasCPU || !s.State.Active() {
			continue
		}
		l := []string{vm.Namespace, vm.Name, string(vm.UID)}
		ch <- prometheus.NewMetricWithTimestamp(now,
			prometheus.MustNewConstMetric(resourceCPU, prometheus.CounterValue, seconds(s.CPUTime), l...))
		if s.Memory.HasRSS {
			ch <- prometheus.NewMetricWithTimestamp(now,
				prometheus.MustNewConstMetric(resourceMemory, prometheus.GaugeValue, float64(s.Memory.RSS), l...))
		}
	}
}
