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

package app

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// action is one power subresource.
type action struct {
	name, short, long string
	// grace adds --grace-period (and, for stop, --force).
	grace, force bool
	// soft adds --soft (restart through the guest agent).
	soft bool
	call func(ctx context.Context, t *target, opts *v1alpha1.VirtualMachineActionOptions) error
}

func newStartCommand(o *Options) *cobra.Command {
	return o.actionCommand(action{
		name: "start", short: "Start a VM",
		long: "Start a stopped VM. A VM with runStrategy Halted is switched to Always.",
		call: func(ctx context.Context, t *target, opts *v1alpha1.VirtualMachineActionOptions) error {
			_, err := t.Client.VesselV1alpha1().VirtualMachines(t.Namespace).Start(ctx, t.Name, opts, metav1.CreateOptions{})
			return err
		},
	})
}

func newStopCommand(o *Options) *cobra.Command {
	return o.actionCommand(action{
		name: "stop", short: "Stop a VM",
		long: `Stop a VM: the guest is asked to power off (ACPI) and forced off when the
grace period ends. --force (or --grace-period=0) forces it off at once, also
to cut short a stop that is already waiting.`,
		grace: true, force: true,
		call: func(ctx context.Context, t *target, opts *v1alpha1.VirtualMachineActionOptions) error {
			_, err := t.Client.VesselV1alpha1().VirtualMachines(t.Namespace).Stop(ctx, t.Name, opts, metav1.CreateOptions{})
			return err
		},
	})
}

func newRestartCommand(o *Options) *cobra.Command {
	return o.actionCommand(action{
		name: "restart", short: "Restart a running VM",
		long: `Restart a running VM: stop it (within the grace period) and start it again.
--soft instead reboots the guest's operating system through the QEMU guest
agent (the VM's AgentConnected condition must be True): the QEMU process and
the VM's devices stay.`,
		grace: true, soft: true,
		call: func(ctx context.Context, t *target, opts *v1alpha1.VirtualMachineActionOptions) error {
			_, err := t.Client.VesselV1alpha1().VirtualMachines(t.Namespace).Restart(ctx, t.Name, opts, metav1.CreateOptions{})
			return err
		},
	})
}

func newPauseCommand(o *Options) *cobra.Command {
	return o.actionCommand(action{
		name: "pause", short: "Pause a running VM's CPUs",
		long: "Pause a running VM: its CPUs stop, its memory and devices stay as they are.",
		call: func(ctx context.Context, t *target, opts *v1alpha1.VirtualMachineActionOptions) error {
			_, err := t.Client.VesselV1alpha1().VirtualMachines(t.Namespace).Pause(ctx, t.Name, opts, metav1.CreateOptions{})
			return err
		},
	})
}

func newUnpauseCommand(o *Options) *cobra.Command {
	return o.actionCommand(action{
		name: "unpause", short: "Let a paused VM's CPUs run again",
		long: "Unpause a paused VM.",
		call: func(ctx context.Context, t *target, opts *v1alpha1.VirtualMachineActionOptions) error {
			_, err := t.Client.VesselV1alpha1().VirtualMachines(t.Namespace).Unpause(ctx, t.Name, opts, metav1.CreateOptions{})
			return err
		},
	})
}

// actionCommand builds `kubectl vm <action> NAME`. Actions change the VM's
// desired state; the node agent carries them out, so success means
// "requested", and `kubectl get vm` shows the progress.
func (o *Options) actionCommand(a action) *cobra.Command {
	var grace int64 = -1
	var force, soft bool
	cmd := &cobra.Command{
		Use:   a.name + " NAME",
		Short: a.short,
		Long:  a.long,
		Args:  exactlyOneVM,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := &v1alpha1.VirtualMachineActionOptions{Soft: soft}
			switch {
			case soft && (force || grace >= 0):
				return fmt.Errorf("--soft reboots through the guest agent without stopping the guest: it cannot go with --force or --grace-period")
			case force && grace > 0:
				return fmt.Errorf("--force stops at once: it cannot go with --grace-period=%d", grace)
			case force:
				zero := int64(0)
				opts.GracePeriodSeconds = &zero
			case grace >= 0:
				opts.GracePeriodSeconds = &grace
			}
			t, err := o.target(args[0])
			if err != nil {
				return err
			}
			if err := a.call(cmd.Context(), t, opts); err != nil {
				return explain(err, a.name, t)
			}
			fmt.Fprintf(o.Out, "virtualmachine.vessel.dev/%s %s requested\n", t.Name, a.name)
			return nil
		},
	}
	if a.grace {
		cmd.Flags().Int64Var(&grace, "grace-period", grace, "seconds the guest gets to power off before it is forced off (default: the VM's terminationGracePeriodSeconds)")
	}
	if a.force {
		cmd.Flags().BoolVar(&force, "force", false, "force the guest off at once (--grace-period=0)")
	}
	if a.soft {
		cmd.Flags().BoolVar(&soft, "soft", false, "reboot the guest's operating system through the QEMU guest agent instead of stopping and starting the VM")
	}
	return cmd
}
