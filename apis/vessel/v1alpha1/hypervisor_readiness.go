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

package v1alpha1

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// Why a VM's Ready condition is Unknown: the hypervisor it is bound to is
// not Ready, so nobody can tell whether its guest runs (the way pods on a
// NotReady node lose their Ready condition).
const VirtualMachineReasonHypervisorNotReady = "HypervisorNotReady"

// HypervisorNotReady says why a hypervisor is not Ready, for the people
// whose VMs it runs: how long its agent has been silent, or what the agent
// itself reported (libvirtd unreachable, say). It returns "" for a Ready
// hypervisor. ready is the hypervisor's Ready condition (nil when it has
// none yet), lastHeartbeat its status.lastHeartbeatTime; silentFor, when
// set, rounds the silence down ("for more than 5m").
//
// It takes plain fields so that the API server's internal types and the
// controllers' versioned types share one wording.
func HypervisorNotReady(name string, ready *metav1.Condition, lastHeartbeat *metav1.Time, now time.Time, silentFor func(time.Duration) time.Duration) string {
	if ready != nil && ready.Status == metav1.ConditionTrue {
		return ""
	}
	if ready != nil && ready.Status == metav1.ConditionFalse && ready.Message != "" {
		return fmt.Sprintf("hypervisor %s is not ready: %s", name, ready.Message)
	}
	if lastHeartbeat == nil {
		return fmt.Sprintf("hypervisor %s is not ready: its agent has not reported yet", name)
	}
	silent := max(now.Sub(lastHeartbeat.Time), 0).Truncate(time.Second)
	if silentFor != nil {
		return fmt.Sprintf("hypervisor %s is not ready: its agent has not reported for more than %s", name, duration.HumanDuration(silentFor(silent)))
	}
	return fmt.Sprintf("hypervisor %s is not ready: its agent has not reported for %s", name, duration.HumanDuration(silent))
}
