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

package isolation

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// A guest that powers itself off right after it boots, under runStrategy
// Always, is not started again every second: the agent backs off (10s,
// 20s, ... up to 5m), the VM says CrashLoopBackOff with the time of the
// next start, and kubectl vm start starts it at once.
func TestCrashingGuestBacksOff(t *testing.T) {
	e := env(t)
	const name = "crashloop"
	createAsAlice(t, e, name, "  - name: seed\n    cloudInit:\n      userData: |\n        #!/bin/sh\n        poweroff -f\n")

	vm := e.WaitVM(t, ns, name, 4*time.Minute, "in CrashLoopBackOff after two restarts", func(vm *v1alpha1.VirtualMachine) bool {
		c := meta.FindStatusCondition(vm.Status.Conditions, v1alpha1.VirtualMachineConditionReady)
		return c != nil && c.Reason == v1alpha1.ReasonCrashLoopBackOff && vm.Status.RestartCount >= 2 && vm.Status.NextStartTime != nil
	})
	seen := time.Now()
	wait := time.Until(vm.Status.NextStartTime.Time)
	t.Logf("restartCount %d, next start in %s", vm.Status.RestartCount, wait.Round(time.Second))
	if wait < 5*time.Second {
		t.Errorf("the agent waits %s before the %d. restart; want at least 10s less the time to notice", wait, vm.Status.RestartCount+1)
	}
	out := e.MustKubectl(t, "alice", "-n", ns, "describe", "vm", name)
	for _, want := range []string{v1alpha1.ReasonCrashLoopBackOff, "keeps stopping on its own", "kubectl vm start starts it now"} {
		if !strings.Contains(out, want) {
			t.Errorf("alice's kubectl describe vm lacks %q:\n%s", want, out)
		}
	}

	// While it backs off, no start happens.
	count := vm.Status.RestartCount
	time.Sleep(min(wait-2*time.Second, 8*time.Second))
	if now := e.WaitVM(t, ns, name, time.Second, "read", func(*v1alpha1.VirtualMachine) bool { return true }); now.Status.RestartCount != count {
		t.Errorf("restartCount went from %d to %d within %s of a backoff of %s", count, now.Status.RestartCount, time.Since(seen).Round(time.Second), wait.Round(time.Second))
	}

	// kubectl vm start cuts the wait short and starts the count again.
	e.MustKubectl(t, "alice", "vm", "-n", ns, "start", name)
	e.WaitVM(t, ns, name, 30*time.Second, "started at once, count reset", func(vm *v1alpha1.VirtualMachine) bool {
		return vm.Status.StartedAt != nil && vm.Status.StartedAt.After(seen) && vm.Status.RestartCount <= 1
	})
}
