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

package pool

import (
	"strconv"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/registry"
)

var tableConvertor = registry.TableConvertor[*vessel.VirtualMachinePool]{
	Columns: []registry.Column{
		{Name: "Desired", Type: "integer", Description: "How many VMs the pool should hand out."},
		{Name: "Current", Type: "integer", Description: "How many VMs the pool has handed out."},
		{Name: "Running", Type: "integer", Description: "How many of those run."},
		{Name: "Warm", Type: "string", Description: "Warm clones ready to hand out / wanted (<none> without warm)."},
		{Name: "Snapshot", Type: "string", Priority: 1, Description: "The snapshot warm clones are made from."},
	},
	Row: func(p *vessel.VirtualMachinePool) []any {
		var desired int64
		if p.Spec.Replicas != nil {
			desired = int64(*p.Spec.Replicas)
		}
		warm, snapshot := "<none>", "<none>"
		if w := p.Spec.Warm; w != nil {
			warm = formatRatio(p.Status.ReadyWarmReplicas, w.Ready)
			snapshot = w.SnapshotName
		}
		return []any{desired, int64(p.Status.Replicas), int64(p.Status.RunningReplicas), warm, snapshot}
	},
}

func formatRatio(have, want int32) string {
	return strconv.Itoa(int(have)) + "/" + strconv.Itoa(int(want))
}
