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
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
)

func newDrainCommand(o *Options) *cobra.Command {
	maxParallel := 2
	var wait bool
	timeout := 10 * time.Minute
	cmd := &cobra.Command{
		Use:   "drain HYPERVISOR",
		Short: "Cordon a hypervisor and live-migrate every running VM off it",
		Long: `Mark HYPERVISOR unschedulable (no new VM is bound to it, no migration
goes to it), then move every running VM bound to it elsewhere with a
VirtualMachineMigration each, at most --max-parallel at a time. VMs that
cannot move (not running, or their migration failed) are listed with the
reason, as kubectl drain lists pods it cannot evict. Draining needs patch on
hypervisors (cluster operators) and create on virtualmachinemigrations in
the VMs' namespaces.`,
		Example: `  kubectl vm drain vm-1 --wait
  kubectl vm uncordon vm-1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := o.target(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := setUnschedulable(ctx, t.Client, args[0], true); err != nil {
				return err
			}
			fmt.Fprintf(o.Out, "hypervisor/%s cordoned\n", args[0])
			list, err := t.Client.VesselV1alpha1().VirtualMachines(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
				FieldSelector: fields.OneTermEqualSelector("spec.nodeName", args[0]).String(),
			})
			if err != nil {
				return fmt.Errorf("list the VMs on %s: %w", args[0], err)
			}
			var movable []v1alpha1.VirtualMachine
			var cannot []string
			for _, vm := range list.Items {
				if vm.Status.Phase != v1alpha1.VirtualMachineRunning {
					cannot = append(cannot, fmt.Sprintf("%s/%s: %s, only running guests are live-migrated", vm.Namespace, vm.Name, vm.Status.Phase))
					continue
				}
				movable = append(movable, vm)
			}
			if !wait {
				for _, vm := range movable {
					m, err := createMigration(ctx, t.Client, vm)
					if err != nil {
						cannot = append(cannot, fmt.Sprintf("%s/%s: %v", vm.Namespace, vm.Name, err))
						continue
					}
					fmt.Fprintf(o.Out, "virtualmachinemigration.vessel.dev/%s created for %s/%s\n", m.Name, vm.Namespace, vm.Name)
				}
				return reportCannot(o, args[0], cannot)
			}
			var mu sync.Mutex
			sem := make(chan struct{}, max(maxParallel, 1))
			var wg sync.WaitGroup
			for _, vm := range movable {
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					err := migrateAndWait(ctx, t.Client, vm, timeout)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						cannot = append(cannot, fmt.Sprintf("%s/%s: %v", vm.Namespace, vm.Name, err))
						return
					}
					fmt.Fprintf(o.Out, "%s/%s moved\n", vm.Namespace, vm.Name)
				})
			}
			wg.Wait()
			if err := reportCannot(o, args[0], cannot); err != nil {
				return err
			}
			fmt.Fprintf(o.Out, "hypervisor/%s drained\n", args[0])
			return nil
		},
	}
	cmd.Flags().IntVar(&maxParallel, "max-parallel", maxParallel, "how many VMs move at once")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until every VM has moved (or failed to)")
	cmd.Flags().DurationVar(&timeout, "timeout", timeout, "how long --wait waits for each VM")
	return cmd
}

func newUncordonCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "uncordon HYPERVISOR",
		Short: "Mark a hypervisor schedulable again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := o.target(args[0])
			if err != nil {
				return err
			}
			if err := setUnschedulable(cmd.Context(), t.Client, args[0], false); err != nil {
				return err
			}
			fmt.Fprintf(o.Out, "hypervisor/%s uncordoned\n", args[0])
			return nil
		},
	}
}

func setUnschedulable(ctx context.Context, client versioned.Interface, name string, on bool) error {
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
	if _, err := client.VesselV1alpha1().Hypervisors().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("mark hypervisor %s unschedulable=%t: %w", name, on, err)
	}
	return nil
}

func createMigration(ctx context.Context, client versioned.Interface, vm v1alpha1.VirtualMachine) (*v1alpha1.VirtualMachineMigration, error) {
	return client.VesselV1alpha1().VirtualMachineMigrations(vm.Namespace).Create(ctx, &v1alpha1.VirtualMachineMigration{
		ObjectMeta: metav1.ObjectMeta{GenerateName: vm.Name + "-drain-"},
		Spec:       v1alpha1.VirtualMachineMigrationSpec{VirtualMachineName: vm.Name},
	}, metav1.CreateOptions{})
}

// migrateAndWait moves vm and waits until its migration ended.
func migrateAndWait(ctx context.Context, client versioned.Interface, vm v1alpha1.VirtualMachine, timeout time.Duration) error {
	m, err := createMigration(ctx, client, vm)
	if err != nil {
		if status, ok := statusOf(err); ok {
			return errors.New(serverMessage(status))
		}
		return err
	}
	var last *v1alpha1.VirtualMachineMigration
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		cur, err := client.VesselV1alpha1().VirtualMachineMigrations(vm.Namespace).Get(ctx, m.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = cur
		return cur.Status.Phase == v1alpha1.MigrationSucceeded || cur.Status.Phase == v1alpha1.MigrationFailed, nil
	})
	switch {
	case err != nil:
		return fmt.Errorf("migration %s did not end within %v", m.Name, timeout)
	case last.Status.Phase == v1alpha1.MigrationFailed:
		return fmt.Errorf("migration %s failed: %s", m.Name, last.Status.Reason)
	}
	return nil
}

func reportCannot(o *Options, hv string, cannot []string) error {
	if len(cannot) == 0 {
		return nil
	}
	sort.Strings(cannot)
	fmt.Fprintf(o.Out, "cannot move these VMs off %s:\n  %s\n", hv, strings.Join(cannot, "\n  "))
	return fmt.Errorf("%d VMs stay on hypervisor %s", len(cannot), hv)
}
