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

package virtualmachine

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
)

// Action is one of the power subresources. Each changes desired state only;
// the node agent carries it out.
type Action string

// The power actions, named as their subresources.
const (
	ActionStart   Action = "start"
	ActionStop    Action = "stop"
	ActionRestart Action = "restart"
	ActionPause   Action = "pause"
	ActionUnpause Action = "unpause"
)

// Actions lists every power action.
var Actions = []Action{ActionStart, ActionStop, ActionRestart, ActionPause, ActionUnpause}

// ActionREST is one power action subresource (start, stop, restart, pause,
// unpause). It changes desired state with optimistic concurrency and answers
// 409 when the action makes no sense in the VM's current state.
type ActionREST struct {
	store  *genericregistry.Store
	action Action
}

var _ rest.NamedCreater = &ActionREST{}

func (r *ActionREST) New() runtime.Object   { return &vessel.VirtualMachineActionOptions{} }
func (r *ActionREST) Destroy()              {}
func (r *ActionREST) NamespaceScoped() bool { return true }

func (r *ActionREST) Create(ctx context.Context, name string, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	opts, ok := obj.(*vessel.VirtualMachineActionOptions)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a VirtualMachineActionOptions: %T", obj))
	}
	if errs := validation.ValidateVirtualMachineActionOptions(opts); len(errs) > 0 {
		return nil, apierrors.NewInvalid(vessel.Kind("VirtualMachineActionOptions"), name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, opts.DeepCopyObject()); err != nil {
			return nil, err
		}
	}
	now := metav1.Now()
	return updateVM(ctx, r.store, name, string(r.action), nil, options, func(vm *vessel.VirtualMachine) error {
		return r.action.apply(vm, opts, now)
	})
}

// errNotNow says why an action makes no sense in the VM's current state; it
// becomes a 409 Conflict.
type errNotNow struct{ msg string }

func (e *errNotNow) Error() string { return e.msg }

func notNow(format string, args ...any) error {
	return &errNotNow{msg: fmt.Sprintf(format, args...)}
}

// isNotNow reports whether err is an action that makes no sense now.
func isNotNow(err error) bool {
	var e *errNotNow
	return errors.As(err, &e)
}

// running is true when the guest is (or is about to be) up according to the
// last status the agent wrote.
func running(vm *vessel.VirtualMachine) bool {
	switch vm.Status.Phase {
	case vessel.VirtualMachineStarting, vessel.VirtualMachineRunning, vessel.VirtualMachinePaused:
		return true
	}
	return false
}

// lastPower is the type of the last power action, or "" when there was none.
func lastPower(vm *vessel.VirtualMachine) vessel.PowerActionType {
	if vm.Spec.PowerAction == nil {
		return ""
	}
	return vm.Spec.PowerAction.Type
}

// apply changes vm's desired state for the action at time now, or returns an
// errNotNow saying why the action makes no sense in the VM's state.
func (a Action) apply(vm *vessel.VirtualMachine, opts *vessel.VirtualMachineActionOptions, now metav1.Time) error {
	if vm.DeletionTimestamp != nil {
		return notNow("VM is being deleted")
	}
	strategy := vm.Spec.RunStrategy
	switch a {
	case ActionStart:
		switch {
		case strategy == vessel.RunStrategyAlways && vm.Status.NextStartTime != nil:
			// Backing off a guest that keeps stopping: start it now.
		case strategy == vessel.RunStrategyAlways:
			return notNow("VM has runStrategy Always: it already runs whenever it can")
		case strategy == vessel.RunStrategyHalted:
			vm.Spec.RunStrategy = vessel.RunStrategyAlways
		case running(vm) && lastPower(vm) != vessel.PowerActionStop:
			return notNow("VM is already %s", vm.Status.Phase)
		}
		vm.Spec.Paused = false
		setPowerAction(vm, vessel.PowerActionStart, opts, now)
	case ActionStop:
		// A stop while already stopping is allowed when it shortens the grace
		// period: that is how `kubectl vm stop --force` ends a hung shutdown.
		forcing := opts.GracePeriodSeconds != nil && vm.Status.Phase == vessel.VirtualMachineStopping
		switch {
		case forcing:
		case strategy == vessel.RunStrategyHalted:
			return notNow("VM is already stopped (runStrategy Halted)")
		case lastPower(vm) == vessel.PowerActionStop:
			return notNow("VM is already stopped")
		case strategy == vessel.RunStrategyManual && !running(vm):
			return notNow("VM is not running")
		}
		if strategy == vessel.RunStrategyAlways {
			vm.Spec.RunStrategy = vessel.RunStrategyHalted
		}
		vm.Spec.Paused = false
		setPowerAction(vm, vessel.PowerActionStop, opts, now)
	case ActionRestart:
		if strategy == vessel.RunStrategyHalted {
			return notNow("VM is being stopped or stopped (runStrategy Halted): start it instead")
		}
		if !running(vm) {
			return notNow("VM is not running (phase %s): start it instead", phaseOrPending(vm))
		}
		if opts.Soft {
			if err := softRestartable(vm); err != nil {
				return err
			}
		}
		vm.Spec.Paused = false
		setPowerAction(vm, vessel.PowerActionRestart, opts, now)
	case ActionPause:
		if vm.Spec.Paused {
			return notNow("VM is already paused")
		}
		if vm.Status.Phase != vessel.VirtualMachineRunning {
			return notNow("VM is not running (phase %s): only a running VM can be paused", phaseOrPending(vm))
		}
		vm.Spec.Paused = true
	case ActionUnpause:
		if !vm.Spec.Paused {
			return notNow("VM is not paused")
		}
		vm.Spec.Paused = false
	default:
		return fmt.Errorf("unknown action %q", a)
	}
	return nil
}

func setPowerAction(vm *vessel.VirtualMachine, t vessel.PowerActionType, opts *vessel.VirtualMachineActionOptions, now metav1.Time) {
	var id int64 = 1
	if vm.Spec.PowerAction != nil {
		id = vm.Spec.PowerAction.ID + 1
	}
	vm.Spec.PowerAction = &vessel.PowerAction{
		Type:               t,
		ID:                 id,
		RequestedAt:        now,
		GracePeriodSeconds: opts.GracePeriodSeconds,
		Soft:               opts.Soft,
	}
}

// softRestartable says why the guest cannot be rebooted through its QEMU
// guest agent now, nil when it can: the agent must answer, and a paused
// guest's agent cannot.
func softRestartable(vm *vessel.VirtualMachine) error {
	if vm.Status.Phase != vessel.VirtualMachineRunning {
		return notNow("a soft restart needs a running guest (phase %s): restart without --soft instead", phaseOrPending(vm))
	}
	agent := meta.FindStatusCondition(vm.Status.Conditions, vessel.VirtualMachineConditionAgentConnected)
	if agent == nil || agent.Status != metav1.ConditionTrue {
		why := "the guest has never connected one"
		if agent != nil && agent.Message != "" {
			why = agent.Message
		}
		return notNow("a soft restart reboots through the QEMU guest agent, which is not connected (%s): restart without --soft instead", why)
	}
	return nil
}

func phaseOrPending(vm *vessel.VirtualMachine) vessel.VirtualMachinePhase {
	if vm.Status.Phase == "" {
		return vessel.VirtualMachinePending
	}
	return vm.Status.Phase
}
