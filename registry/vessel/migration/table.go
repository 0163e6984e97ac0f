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

package migration

import (
	"fmt"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/registry"
)

var tableConvertor = registry.TableConvertor[*vessel.VirtualMachineMigration]{
	Columns: []registry.Column{
		{Name: "VM", Type: "string", Description: "The VM being moved."},
		{Name: "Phase", Type: "string", Description: "Pending, Scheduling, Running, Succeeded or Failed."},
		{Name: "Source", Type: "string", Description: "The hypervisor the guest leaves."},
		{Name: "Target", Type: "string", Description: "The hypervisor the guest moves to."},
		{Name: "Progress", Type: "string", Description: "Share of memory and disk data sent."},
		{Name: "Downtime", Type: "string", Description: "How long the guest was paused for the switch-over."},
		{Name: "Reason", Type: "string", Priority: 1, Description: "Why the migration waits (Scheduling) or failed."},
	},
	Row: func(m *vessel.VirtualMachineMigration) []any {
		downtime := "<none>"
		if m.Status.Downtime != nil {
			downtime = m.Status.Downtime.Duration.String()
		}
		return []any{
			m.Spec.VirtualMachineName,
			registry.OrNone(string(m.Status.Phase)),
			registry.OrNone(m.Status.Source),
			registry.OrNone(m.Status.Target),
			fmt.Sprintf("%d%%", m.Status.Progress),
			downtime,
			registry.OrNone(m.Status.Reason),
		}
	},
}
