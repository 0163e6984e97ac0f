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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func newCloneCommand(o *Options) *cobra.Command {
	var snapshot string
	var noMemory, wait bool
	timeout := defaultWaitTimeout
	cmd := &cobra.Command{
		Use:   "clone SOURCE NEW",
		Short: "Make a new VM from a VM or one of its snapshots",
		Long: `Make a new VM named NEW from VM SOURCE as it runs now, or, with
--snapshot, as one of its snapshots saved it, by creating a
VirtualMachineClone (named NEW too).

By default the new VM resumes from the source's memory: its guest runs on
from where the source's was, without booting, in about as long as it takes
to resume a saved guest. The source's guest pauses while its memory and disks
are saved (a fraction of a second) and runs on; a snapshot's memory was saved
with it. With --no-memory the new VM boots from the source's disks as they
were.

The new VM runs on the hypervisor that holds the source, with its own UID,
MAC addresses, VM generation ID and copy-on-write disks: neither VM sees the
other's writes. Its guest is told its new identity (hostname, cloud-init
instance ID, MACs) on Vessel's identity port. Cloning needs create on
VirtualMachines in the namespace and get on the source.`,
		Example: `  kubectl vm clone demo demo-2 --wait
  kubectl vm clone demo demo-3 --snapshot before-upgrade --wait
  kubectl vm clone demo demo-cold --no-memory`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return fmt.Errorf("clone takes a source VM name and a new VM name, got %d arguments\nUsage: %s", len(args), cmd.UseLine())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := o.target(args[0])
			if err != nil {
				return err
			}
			memory := !noMemory
			source := v1alpha1.CloneSource{VirtualMachineName: t.Name}
			if snapshot != "" {
				source = v1alpha1.CloneSource{SnapshotName: snapshot}
			}
			clones := t.Client.VesselV1alpha1().VirtualMachineClones(t.Namespace)
			start := time.Now()
			created, err := clones.Create(cmd.Context(), &v1alpha1.VirtualMachineClone{
				ObjectMeta: metav1.ObjectMeta{Name: args[1]},
				Spec: v1alpha1.VirtualMachineCloneSpec{
					Source: source,
					Target: v1alpha1.CloneTarget{Name: args[1]},
					Memory: &memory,
				},
			}, metav1.CreateOptions{})
			if err != nil {
				return explainCreate(err, "clone", t)
			}
			if !wait {
				fmt.Fprintf(o.Out, "virtualmachineclone.vessel.dev/%s created\n", created.Name)
				return nil
			}
			ref := t.Namespace + "/" + created.Name
			p := &progress{out: o.Out, prefix: "clone " + ref + ": "}
			lw := byName(created.Name, clones.List, clones.Watch)
			var last *v1alpha1.VirtualMachineClone
			err = waitUntil(cmd.Context(), timeout, lw, &v1alpha1.VirtualMachineClone{}, func(obj runtime.Object) (bool, error) {
				c := obj.(*v1alpha1.VirtualMachineClone)
				if c.UID != created.UID {
					return false, fmt.Errorf("clone %s was deleted", ref)
				}
				last = c
				phase := c.Status.Phase
				if phase == "" {
					phase = v1alpha1.ClonePending
				}
				p.phase(string(phase))
				return phase == v1alpha1.CloneSucceeded || phase == v1alpha1.CloneFailed, nil
			})
			if err != nil {
				p.end("")
				return waitError(err, "clone "+ref, timeout, last != nil, func() string { return string(last.Status.Phase) })
			}
			if last.Status.Phase == v1alpha1.CloneFailed {
				p.end("")
				return fmt.Errorf("clone %s failed: %s", ref, last.Status.Error)
			}
			detail := ""
			if c := meta.FindStatusCondition(last.Status.Conditions, v1alpha1.CloneConditionReady); c != nil && c.Message != "" {
				detail = ": " + c.Message
			}
			p.end(fmt.Sprintf(" in %.1fs%s", time.Since(start).Seconds(), detail))
			return nil
		},
	}
	cmd.Flags().StringVar(&snapshot, "snapshot", "", "clone the VM as this VirtualMachineSnapshot of it saved it, instead of as it is now")
	cmd.Flags().BoolVar(&noMemory, "no-memory", false, "clone the disks only: the new VM boots from them instead of resuming the source's memory")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the new VM is made (or the clone failed), printing its progress")
	cmd.Flags().DurationVar(&timeout, "timeout", timeout, "how long --wait waits")
	return cmd
}
