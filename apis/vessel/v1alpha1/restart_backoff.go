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

import "time"

// How the node agent spaces the restarts of a guest that keeps stopping
// under runStrategy Always (or crashing under RerunOnFailure), as the
// kubelet does for a pod's containers: users read status.restartCount,
// status.nextStartTime and the Ready condition's CrashLoopBackOff reason.
const (
	// RestartBackoffInitial is the wait before the second restart of a
	// guest that keeps stopping on its own; the first one is immediate.
	RestartBackoffInitial = 10 * time.Second
	// RestartBackoffMax bounds the wait.
	RestartBackoffMax = 5 * time.Minute
	// RestartBackoffReset is how long a guest must run for its restart
	// count (and so its wait) to go back to zero.
	RestartBackoffReset = 10 * time.Minute
)

// RestartBackoff is how long the agent waits before it starts again a
// guest that stopped on its own after restartCount earlier restarts: none
// after the first stop, then 10s, 20s, 40s, ... up to 5m.
func RestartBackoff(restartCount int32) time.Duration {
	if restartCount <= 0 {
		return 0
	}
	d := RestartBackoffInitial
	for i := int32(1); i < restartCount && d < RestartBackoffMax; i++ {
		d *= 2
	}
	return min(d, RestartBackoffMax)
}
