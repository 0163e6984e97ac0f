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
	"fmt"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func newMigrateCommand(o *Options) *cobra.Command {
	var to string
	var wait bool
	timeout := defaultWaitTimeout
	cmd := &cobra.Command{
		Use:   "migrate NAME",
		Short: "Move a running VM to another hypervisor without stopping it",
		Long: `Live-migrate VM NAME to another hypervisor by creating a
VirtualMachineMigration: its guest keeps running while its memory and its
disks (node-local qcow2 files) are copied, then pauses for a few tens of
milliseconds while it switches over. The scheduler picks the target (Ready,
not cordoned, room for the VM, its nodeSelector) unless --to names one.

Deleting the migration while it runs cancels it: the guest stays where it
was. Migrating needs create on virtualmachinemigrations in the namespace.`,
		Example: `  kubectl vm migrate demo --wait
  kubectl vm migrate demo --to vm-2`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("migrate takes one VM name, got %d arguments\nUsage: %s", len(args), cmd.UseLine())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := o.target(args[0])
			if err != nil {
				return err
			}
			migrations := t.Client.VesselV1alpha1().VirtualMachineMigrations(t.Namespace)
			created, err := migrations.Create(cmd.Context(), &v1alpha1.VirtualMachineMigration{
				ObjectMeta: metav1.ObjectMeta{GenerateName: t.Name + "-"},
				Spec:       v1alpha1.VirtualMachineMigrationSpec{VirtualMachineName: t.Name, TargetHypervisor: to},
			}, metav1.CreateOptions{})
			if err != nil {
				return explainCreate(err, "migrate", t)
			}
			if !wait {
				fmt.Fprintf(o.Out, "virtualmachinemigration.vessel.dev/%s created\n", created.Name)
				return nil
			}
			ref := t.Namespace + "/" + created.Name
			p := &progress{out: o.Out, prefix: "migration " + ref + ": "}
			lw := byName(created.Name, migrations.List, migrations.Watch)
			var last *v1alpha1.VirtualMachineMigration
			err = waitUntil(cmd.Context(), timeout, lw, &v1alpha1.VirtualMachineMigration{}, func(obj runtime.Object) (bool, error) {
				m := obj.(*v1alpha1.VirtualMachineMigration)
				if m.UID != created.UID {
					return false, fmt.Errorf("migration %s was deleted", ref)
				}
				last = m
				p.phase(migrationPhase(m))
				return m.Status.Phase == v1alpha1.MigrationSucceeded || m.Status.Phase == v1alpha1.MigrationFailed, nil
			})
			if err != nil {
				p.end("")
				return waitError(err, "migration "+ref, timeout, last != nil, func() string { return string(last.Status.Phase) })
			}
			if last.Status.Phase == v1alpha1.MigrationFailed {
				p.end("")
				return fmt.Errorf("migration %s failed: %s", ref, last.Status.Reason)
			}
			p.end(describeMigration(last))
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the hypervisor to move to (default: the scheduler picks one)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the guest runs on the target (or the migration failed), printing its progress")
	cmd.Flags().DurationVar(&timeout, "timeout", timeout, "how long --wait waits")
	return cmd
}

// migrationPhase is the phase with the share sent while it runs.
func migrationPhase(m *v1alpha1.VirtualMachineMigration) string {
	switch m.Status.Phase {
	case "":
		return string(v1alpha1.MigrationPending)
	case v1alpha1.MigrationScheduling:
		if m.Status.Reason != "" {
			return fmt.Sprintf("Scheduling (%s)", m.Status.Reason)
		}
	case v1alpha1.MigrationRunning:
		if m.Status.TotalBytes > 0 {
			return fmt.Sprintf("Running %s -> %s %d%%", m.Status.Source, m.Status.Target, m.Status.Progress)
		}
		return fmt.Sprintf("Running %s -> %s", m.Status.Source, m.Status.Target)
	}
	return string(m.Status.Phase)
}

func describeMigration(m *v1alpha1.VirtualMachineMigration) string {
	var d, down time.Duration
	if m.Status.Duration != nil {
		d = m.Status.Duration.Duration
	}
	if m.Status.Downtime != nil {
		down = m.Status.Downtime.Duration
	}
	return fmt.Sprintf(": %s -> %s in %.1fs, downtime %s, %d MiB sent", m.Status.Source, m.Status.Target, d.Seconds(), down, m.Status.TransferredBytes>>20)
}
