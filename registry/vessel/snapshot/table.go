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

package snapshot

import (
	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/registry"
)

var tableConvertor = registry.TableConvertor[*vessel.VirtualMachineSnapshot]{
	Columns: []registry.Column{
		{Name: "VM", Type: "string", Description: "The VM the snapshot is of."},
		{Name: "Phase", Type: "string", Description: "Pending, InProgress, Succeeded or Failed."},
		{Name: "Ready", Type: "boolean", Description: "Whether the snapshot can be restored."},
		{Name: "Size", Type: "string", Description: "Space the snapshot takes."},
		{Name: "Memory", Type: "boolean", Priority: 1, Description: "Whether the guest's memory was saved."},
		{Name: "Error", Type: "string", Priority: 1, Description: "Why the snapshot failed."},
	},
	Row: func(s *vessel.VirtualMachineSnapshot) []any {
		size := "<none>"
		if s.Status.Size != nil {
			size = registry.Bytes(*s.Status.Size)
		}
		return []any{
			s.Spec.VirtualMachineName,
			string(s.Status.Phase),
			s.Status.ReadyToUse,
			size,
			s.Status.MemoryIncluded,
			registry.OrNone(s.Status.Error),
		}
	},
}
