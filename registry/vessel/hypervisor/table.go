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
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/registry"
)

var tableConvertor = registry.TableConvertor[*vessel.Hypervisor]{
	Columns: []registry.Column{
		{Name: "Ready", Type: "string", Description: "Whether the agent heartbeats."},
		{Name: "VMs", Type: "string", Description: "VMs bound / allocatable."},
		{Name: "CPU", Type: "string", Description: "vCPUs allocated / allocatable."},
		{Name: "Memory", Type: "string", Description: "Memory allocated / allocatable."},
		{Name: "KVM", Type: "string", Priority: 1, Description: "Whether guests use hardware acceleration."},
		{Name: "Endpoint", Type: "string", Priority: 1, Description: "The agent's stream server."},
	},
	Row: func(h *vessel.Hypervisor) []any {
		s := h.Status
		return []any{
			ready(h),
			fmt.Sprintf("%d/%d", s.Allocated.VMs, s.Allocatable.VMs),
			fmt.Sprintf("%d/%d", s.Allocated.CPUs, s.Allocatable.CPUs),
			registry.Bytes(s.Allocated.Memory) + "/" + registry.Bytes(s.Allocatable.Memory),
			strconv.FormatBool(s.KVM),
			registry.OrNone(s.DaemonEndpoint),
		}
	},
}

func ready(h *vessel.Hypervisor) string {
	c := meta.FindStatusCondition(h.Status.Conditions, vessel.HypervisorConditionReady)
	var out string
	switch {
	case c == nil:
		out = "Unknown"
	case c.Status == metav1.ConditionTrue:
		out = "True"
	default:
		out = "False"
	}
	if h.Spec.Unschedulable {
		out += ",SchedulingDisabled"
	}
	return out
}
