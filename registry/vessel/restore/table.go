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

package restore

import (
	"strconv"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/registry"
)

var tableConvertor = registry.TableConvertor[*vessel.VirtualMachineRestore]{
	Columns: []registry.Column{
		{Name: "VM", Type: "string", Description: "The VM being restored."},
		{Name: "Snapshot", Type: "string", Description: "The snapshot restored from."},
		{Name: "Complete", Type: "string", Description: "Whether the restore finished."},
		{Name: "Error", Type: "string", Priority: 1, Description: "Why the restore failed."},
	},
	Row: func(r *vessel.VirtualMachineRestore) []any {
		return []any{
			r.Spec.VirtualMachineName,
			r.Spec.SnapshotName,
			strconv.FormatBool(r.Status.Complete),
			registry.OrNone(r.Status.Error),
		}
	},
}
