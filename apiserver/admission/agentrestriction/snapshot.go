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

package agentrestriction

import (
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apiserver/pkg/admission"

	"github.com/vessel-vm/vessel/apis/vessel"
)

// checkSnapshotFinalizers allows an agent's update of a snapshot (not its
// status) when only the finalizers change and the snapshot is the agent's:
// its data is on the agent's hypervisor (status.nodeName, which only that
// agent can have written, through the status subresource confined above)
// or its VM is bound there. That is how an agent adds
// vessel.dev/snapshot-cleanup before it takes a snapshot and releases it
// once the data is gone, also after the VM itself was deleted.
func (p *Plugin) checkSnapshotFinalizers(a admission.Attributes, agent string, forbid func(string, ...any) error) error {
	s, ok1 := a.GetObject().(*vessel.VirtualMachineSnapshot)
	old, ok2 := a.GetOldObject().(*vessel.VirtualMachineSnapshot)
	if !ok1 || !ok2 {
		return forbid("unexpected objects %T, %T", a.GetObject(), a.GetOldObject())
	}
	if old.Status.NodeName != agent {
		if err := p.checkBound(a, agent, a.GetNamespace(), old.Spec.VirtualMachineName, forbid); err != nil {
			return err
		}
	}
	n, o := s.DeepCopy(), old.DeepCopy()
	for _, x := range []*vessel.VirtualMachineSnapshot{n, o} {
		x.Finalizers = nil
		x.ResourceVersion = ""
		x.ManagedFields = nil
		x.Generation = 0
	}
	if !apiequality.Semantic.DeepEqual(n, o) {
		return forbid("may only change the finalizers of snapshot %s/%s", a.GetNamespace(), a.GetName())
	}
	return nil
}
