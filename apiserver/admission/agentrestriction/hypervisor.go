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
	"maps"
	"strings"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apiserver/pkg/admission"

	"github.com/vessel-vm/vessel/apis/vessel"
)

// noRestrictedLabels allows an agent to register its Hypervisor with the
// labels it is configured with (--node-labels), except those reserved to
// administrators.
func noRestrictedLabels(a admission.Attributes, forbid func(string, ...any) error) error {
	hv, ok := a.GetObject().(*vessel.Hypervisor)
	if !ok {
		return forbid("unexpected object %T", a.GetObject())
	}
	for key := range hv.Labels {
		if strings.HasPrefix(key, RestrictedLabelPrefix) {
			return forbid("may not set label %s: labels under %s are set by an administrator", key, RestrictedLabelPrefix)
		}
	}
	return nil
}

// onlyAdminChangesHypervisor refuses an agent's update of its Hypervisor
// that changes its spec (unschedulable) or labels: they decide which VMs
// it gets, so an agent that could set them could draw other tenants' VMs
// to itself or undo a cordon. Its status goes through the status
// subresource.
func onlyAdminChangesHypervisor(a admission.Attributes, forbid func(string, ...any) error) error {
	hv, ok1 := a.GetObject().(*vessel.Hypervisor)
	old, ok2 := a.GetOldObject().(*vessel.Hypervisor)
	if !ok1 || !ok2 {
		return forbid("unexpected objects %T, %T", a.GetObject(), a.GetOldObject())
	}
	if !apiequality.Semantic.DeepEqual(hv.Spec, old.Spec) {
		return forbid("may not change the spec of its Hypervisor (unschedulable is an administrator's decision: kubectl patch hypervisor %s)", hv.Name)
	}
	if !maps.Equal(hv.Labels, old.Labels) {
		return forbid("may not change the labels of its Hypervisor after it registered: they select VMs, so an administrator changes them (kubectl label hypervisor %s)", hv.Name)
	}
	return nil
}
