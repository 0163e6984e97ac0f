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

package nodestatus

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// Reasons of the Hypervisor's Ready condition as the agent reports it.
const (
	ReasonHeartbeat           = "AgentHeartbeat"
	ReasonLibvirtdUnreachable = "LibvirtdUnreachable"
)

// readyCondition is the Ready condition for a heartbeat whose call to
// libvirtd returned libvirtErr. A node whose agent cannot reach libvirtd
// cannot start, stop or watch guests, so it is not Ready and the scheduler
// binds no new VM to it; running guests are not affected.
func readyCondition(libvirtErr error) metav1.Condition {
	if libvirtErr != nil {
		return metav1.Condition{
			Type:    v1alpha1.HypervisorConditionReady,
			Status:  metav1.ConditionFalse,
			Reason:  ReasonLibvirtdUnreachable,
			Message: "libvirtd is unreachable: " + libvirtErr.Error(),
		}
	}
	return metav1.Condition{
		Type:    v1alpha1.HypervisorConditionReady,
		Status:  metav1.ConditionTrue,
		Reason:  ReasonHeartbeat,
		Message: "the node agent is posting heartbeats and reaches libvirtd",
	}
}
