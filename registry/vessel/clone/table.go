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

package clone

import (
	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/registry"
)

var tableConvertor = registry.TableConvertor[*vessel.VirtualMachineClone]{
	Columns: []registry.Column{
		{Name: "Source", Type: "string", Description: "The VM or snapshot cloned (snapshot/NAME for a snapshot)."},
		{Name: "Target", Type: "string", Description: "The new VM."},
		{Name: "Memory", Type: "boolean", Description: "Whether the new guest resumes from the source's memory."},
		{Name: "Phase", Type: "string", Description: "Pending, InProgress, Succeeded or Failed."},
		{Name: "Took", Type: "string", Description: "How long the clone took."},
		{Name: "Node", Type: "string", Priority: 1, Description: "The hypervisor the new VM runs on."},
		{Name: "Error", Type: "string", Priority: 1, Description: "Why the clone failed."},
	},
	Row: func(c *vessel.VirtualMachineClone) []any {
		source := c.Spec.Source.VirtualMachineName
		if c.Spec.Source.SnapshotName != "" {
			source = "snapshot/" + c.Spec.Source.SnapshotName
		}
		took := "<none>"
		if d := c.Status.Duration; d != nil {
			took = d.Duration.Round(10 * 1e6).String()
		}
		return []any{
			source,
			c.Spec.Target.Name,
			c.Spec.Memory != nil && *c.Spec.Memory,
			string(c.Status.Phase),
			took,
			registry.OrNone(c.Status.NodeName),
			registry.OrNone(c.Status.Error),
		}
	},
}
