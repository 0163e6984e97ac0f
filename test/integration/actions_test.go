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

package integration

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
)

// actionFunc is one power action of the typed client.
type actionFunc func(ctx context.Context, name string, opts *v1alpha1.VirtualMachineActionOptions, co metav1.CreateOptions) (*v1alpha1.VirtualMachine, error)

// powerActions returns the typed client's power actions in a namespace.
func powerActions(s *apiservertesting.TestServer, ns string) map[string]actionFunc {
	c := vms(s, ns)
	return map[string]actionFunc{
		"start":   c.Start,
		"stop":    c.Stop,
		"restart": c.Restart,
		"pause":   c.Pause,
		"unpause": c.Unpause,
	}
}

// actionStep is the agent reporting a phase (if any), then one action.
type actionStep struct {
	// phase, when set, is written to status first, as the agent would.
	phase  v1alpha1.VirtualMachinePhase
	action string
	grace  *int64
	// agent, when set, writes the AgentConnected condition first, as the
	// agent would; soft asks for a soft restart.
	agent metav1.ConditionStatus
	soft  bool
	// conflict is a substring of the expected 409 message; empty for success.
	conflict string
	// want checks the VM after a successful action.
	want func(t *testing.T, vm *v1alpha1.VirtualMachine)
}

// wantPower checks runStrategy, paused and the last power action.
func wantPower(strategy v1alpha1.RunStrategy, paused bool, typ v1alpha1.PowerActionType, id int64) func(*testing.T, *v1alpha1.VirtualMachine) {
	return func(t *testing.T, vm *v1alpha1.VirtualMachine) {
		t.Helper()
		if vm.Spec.RunStrategy != strategy || vm.Spec.Paused != paused {
			t.Errorf("runStrategy %q, paused %v; want %q, %v", vm.Spec.RunStrategy, vm.Spec.Paused, strategy, paused)
		}
		pa := vm.Spec.PowerAction
		switch {
		case typ == "" && pa != nil:
			t.Errorf("powerAction = %+v, want none", pa)
		case typ == "":
		case pa == nil:
			t.Errorf("no powerAction, want %s #%d", typ, id)
		case pa.Type != typ || pa.ID != id || pa.RequestedAt.IsZero():
			t.Errorf("powerAction = %s #%d at %v, want %s #%d with a request time", pa.Type, pa.ID, pa.RequestedAt, typ, id)
		}
	}
}

func TestActions(t *testing.T) {
	s := startServer(t)

	for _, tc := range []struct {
		name     string
		strategy v1alpha1.RunStrategy // "" for the default, Always
		steps    []actionStep
	}{{
		name:  "start on Always is a conflict",
		steps: []actionStep{{action: "start", conflict: "VM has runStrategy Always: it already runs whenever it can"}},
	}, {
		name: "stop halts, start runs again",
		steps: []actionStep{
			{action: "stop", want: wantPower(v1alpha1.RunStrategyHalted, false, v1alpha1.PowerActionStop, 1)},
			{action: "stop", conflict: "VM is already stopped (runStrategy Halted)"},
			{action: "start", want: wantPower(v1alpha1.RunStrategyAlways, false, v1alpha1.PowerActionStart, 2)},
			{action: "start", conflict: "runStrategy Always"},
		},
	}, {
		name: "restart needs a running guest",
		steps: []actionStep{
			{action: "restart", conflict: "VM is not running (phase Pending): start it instead"},
			{phase: v1alpha1.VirtualMachineStopped, action: "restart", conflict: "VM is not running (phase Stopped): start it instead"},
			{phase: v1alpha1.VirtualMachineRunning, action: "restart", want: wantPower(v1alpha1.RunStrategyAlways, false, v1alpha1.PowerActionRestart, 1)},
			{action: "restart", want: wantPower(v1alpha1.RunStrategyAlways, false, v1alpha1.PowerActionRestart, 2)},
		},
	}, {
		name: "restart of a halted VM that still runs is a conflict",
		steps: []actionStep{
			{phase: v1alpha1.VirtualMachineRunning, action: "stop"},
			{action: "restart", conflict: "runStrategy Halted"},
		},
	}, {
		name: "pause needs a running guest and is not repeated",
		steps: []actionStep{
			{action: "unpause", conflict: "VM is not paused"},
			{action: "pause", conflict: "VM is not running (phase Pending): only a running VM can be paused"},
			{phase: v1alpha1.VirtualMachineStarting, action: "pause", conflict: "only a running VM can be paused"},
			{phase: v1alpha1.VirtualMachineRunning, action: "pause", want: wantPower(v1alpha1.RunStrategyAlways, true, "", 0)},
			{action: "pause", conflict: "VM is already paused"},
			{phase: v1alpha1.VirtualMachinePaused, action: "pause", conflict: "VM is already paused"},
			{action: "unpause", want: wantPower(v1alpha1.RunStrategyAlways, false, "", 0)},
			{action: "unpause", conflict: "VM is not paused"},
		},
	}, {
		name: "stop and restart unpause",
		steps: []actionStep{
			{phase: v1alpha1.VirtualMachineRunning, action: "pause"},
			{phase: v1alpha1.VirtualMachinePaused, action: "restart", want: wantPower(v1alpha1.RunStrategyAlways, false, v1alpha1.PowerActionRestart, 1)},
			{phase: v1alpha1.VirtualMachineRunning, action: "pause"},
			{phase: v1alpha1.VirtualMachinePaused, action: "stop", want: wantPower(v1alpha1.RunStrategyHalted, false, v1alpha1.PowerActionStop, 2)},
		},
	}, {
		name: "stop with a grace period while stopping forces",
		steps: []actionStep{
			{phase: v1alpha1.VirtualMachineRunning, action: "stop", grace: ptr(int64(120))},
			{phase: v1alpha1.VirtualMachineStopping, action: "stop", conflict: "VM is already stopped"},
			{action: "stop", grace: ptr(int64(0)), want: func(t *testing.T, vm *v1alpha1.VirtualMachine) {
				wantPower(v1alpha1.RunStrategyHalted, false, v1alpha1.PowerActionStop, 2)(t, vm)
				if g := vm.Spec.PowerAction.GracePeriodSeconds; g == nil || *g != 0 {
					t.Errorf("powerAction.gracePeriodSeconds = %v, want 0", g)
				}
			}},
			{phase: v1alpha1.VirtualMachineStopped, action: "stop", grace: ptr(int64(0)), conflict: "already stopped"},
		},
	}, {
		name: "a soft restart needs a running guest with a connected guest agent",
		steps: []actionStep{
			{phase: v1alpha1.VirtualMachineRunning, action: "restart", soft: true, conflict: "the QEMU guest agent, which is not connected (the guest has never connected one): restart without --soft instead"},
			{agent: metav1.ConditionFalse, action: "restart", soft: true, conflict: "which is not connected (the guest agent stopped answering)"},
			{agent: metav1.ConditionTrue, action: "restart", soft: true, grace: ptr(int64(10)), conflict: "give soft or gracePeriodSeconds, not both"},
			{action: "restart", soft: true, want: func(t *testing.T, vm *v1alpha1.VirtualMachine) {
				wantPower(v1alpha1.RunStrategyAlways, false, v1alpha1.PowerActionRestart, 1)(t, vm)
				if !vm.Spec.PowerAction.Soft {
					t.Errorf("powerAction.soft = false, want true")
				}
			}},
			{action: "restart", want: func(t *testing.T, vm *v1alpha1.VirtualMachine) {
				if vm.Spec.PowerAction.Soft {
					t.Errorf("a restart without --soft left powerAction.soft true")
				}
			}},
			{phase: v1alpha1.VirtualMachinePaused, action: "restart", soft: true, conflict: "a soft restart needs a running guest (phase Paused)"},
		},
	}, {
		name:     "Manual runs only when started",
		strategy: v1alpha1.RunStrategyManual,
		steps: []actionStep{
			{action: "stop", conflict: "VM is not running"},
			{action: "start", want: wantPower(v1alpha1.RunStrategyManual, false, v1alpha1.PowerActionStart, 1)},
			{phase: v1alpha1.VirtualMachineRunning, action: "start", conflict: "VM is already Running"},
			{action: "stop", want: wantPower(v1alpha1.RunStrategyManual, false, v1alpha1.PowerActionStop, 2)},
			// The agent has not acted yet, but a start after a stop is new intent.
			{action: "start", want: wantPower(v1alpha1.RunStrategyManual, false, v1alpha1.PowerActionStart, 3)},
		},
	}, {
		name:     "stop keeps runStrategies other than Always",
		strategy: v1alpha1.RunStrategyRerunOnFailure,
		steps: []actionStep{
			{phase: v1alpha1.VirtualMachineRunning, action: "stop", want: wantPower(v1alpha1.RunStrategyRerunOnFailure, false, v1alpha1.PowerActionStop, 1)},
			{action: "start", want: wantPower(v1alpha1.RunStrategyRerunOnFailure, false, v1alpha1.PowerActionStart, 2)},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := unique(t)
			vm := newVM("a")
			vm.Spec.RunStrategy = tc.strategy
			createVM(t, s, ns, vm)
			actions := powerActions(s, ns)
			for i, step := range tc.steps {
				if step.phase != "" {
					setPhase(t, s, ns, "a", step.phase)
				}
				if step.agent != "" {
					setStatus(t, s, ns, "a", func(st *v1alpha1.VirtualMachineStatus) {
						meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.VirtualMachineConditionAgentConnected,
							Status: step.agent, Reason: "Test", Message: "the guest agent stopped answering"})
					})
				}
				before := getVM(t, s, ns, "a")
				got, err := actions[step.action](t.Context(), "a", &v1alpha1.VirtualMachineActionOptions{GracePeriodSeconds: step.grace, Soft: step.soft}, metav1.CreateOptions{})
				if step.conflict != "" {
					code := int32(409)
					if step.soft && step.grace != nil {
						code = 422 // invalid options, not the VM's state
					}
					wantAPIError(t, err, code, step.conflict)
					if after := getVM(t, s, ns, "a"); after.ResourceVersion != before.ResourceVersion {
						t.Errorf("step %d: refused %s changed the VM", i, step.action)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %s: %v", i, step.action, err)
				}
				stored := getVM(t, s, ns, "a")
				if got.ResourceVersion == "" || got.ResourceVersion != stored.ResourceVersion {
					t.Errorf("step %d: %s answered resourceVersion %q, stored is %q", i, step.action, got.ResourceVersion, stored.ResourceVersion)
				}
				if got.Generation != before.Generation+1 || stored.Generation != got.Generation {
					t.Errorf("step %d: %s moved generation %d -> %d (stored %d), want +1", i, step.action, before.Generation, got.Generation, stored.Generation)
				}
				if step.want != nil {
					step.want(t, stored)
				}
			}
		})
	}

	t.Run("dry run changes nothing", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("a"))
		before := setPhase(t, s, ns, "a", v1alpha1.VirtualMachineRunning)
		dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
		for name, action := range powerActions(s, ns) {
			got, err := action(t.Context(), "a", &v1alpha1.VirtualMachineActionOptions{}, dryRun)
			switch name {
			case "start", "unpause": // not now on a running, unpaused VM
				if err == nil {
					t.Errorf("dry-run %s succeeded; want the same 409 as a real one", name)
				}
				continue
			}
			if err != nil {
				t.Errorf("dry-run %s: %v", name, err)
				continue
			}
			if got.Generation != before.Generation+1 {
				t.Errorf("dry-run %s answered generation %d, want what a real one would store: %d", name, got.Generation, before.Generation+1)
			}
		}
		if after := getVM(t, s, ns, "a"); after.ResourceVersion != before.ResourceVersion || after.Spec.PowerAction != nil || after.Spec.Paused {
			t.Errorf("dry runs were stored: %+v", after.Spec)
		}
	})

	t.Run("invalid options are refused", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("a"))
		for _, grace := range []int64{-1, 3601} {
			_, err := vms(s, ns).Stop(t.Context(), "a", &v1alpha1.VirtualMachineActionOptions{GracePeriodSeconds: ptr(grace)}, metav1.CreateOptions{})
			st := wantAPIError(t, err, 422, "gracePeriodSeconds")
			wantCause(t, st, "gracePeriodSeconds")
		}
		if vm := getVM(t, s, ns, "a"); vm.Spec.PowerAction != nil {
			t.Errorf("refused stop was stored: %+v", vm.Spec.PowerAction)
		}
	})

	t.Run("actions on a missing VM are NotFound", func(t *testing.T) {
		for name, action := range powerActions(s, unique(t)) {
			_, err := action(t.Context(), "missing", &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{})
			if err == nil {
				t.Errorf("%s of a missing VM succeeded", name)
				continue
			}
			wantAPIError(t, err, 404, `virtualmachines.vessel.dev "missing" not found`)
		}
	})

	// An action and a concurrent write never lose each other: actions retry
	// on write conflicts instead of failing or overwriting.
	t.Run("actions and updates interleave without lost writes", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("a"))
		setPhase(t, s, ns, "a", v1alpha1.VirtualMachineRunning)
		done := make(chan error, 1)
		go func() {
			var err error
			for i := 0; i < 20 && err == nil; i++ {
				_, err = updateStatus(t.Context(), s, ns, "a", func(st *v1alpha1.VirtualMachineStatus) { st.ObservedGeneration = int64(i) })
			}
			done <- err
		}()
		for i := int64(1); i <= 20; i++ {
			vm, err := vms(s, ns).Restart(t.Context(), "a", &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("restart %d: %v", i, err)
			}
			if vm.Spec.PowerAction.ID != i {
				t.Fatalf("restart %d got id %d", i, vm.Spec.PowerAction.ID)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if vm := getVM(t, s, ns, "a"); vm.Spec.PowerAction.ID != 20 || vm.Generation != 21 || vm.Status.ObservedGeneration != 19 {
			t.Errorf("after 20 restarts and 20 status writes: id %d, generation %d, observedGeneration %d; want 20, 21, 19",
				vm.Spec.PowerAction.ID, vm.Generation, vm.Status.ObservedGeneration)
		}
	})
}
