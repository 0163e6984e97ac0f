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
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func newGuestInfoCommand(o *Options) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "guestinfo NAME [-o json|yaml]",
		Short: "Show what a VM's QEMU guest agent reports about its guest",
		Long: `Show the guest operating system, kernel and host name that the QEMU
guest agent in a VM reported (status.guestOSInfo), and whether the agent is
connected now (the AgentConnected condition). The guest must run qemu-ga on
the org.qemu.guest_agent.0 port every Vessel VM has.`,
		Args: exactlyOneVM,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" && output != "yaml" {
				return fmt.Errorf("--output must be json or yaml, got %q", output)
			}
			t, err := o.target(args[0])
			if err != nil {
				return err
			}
			vm, err := t.Client.VesselV1alpha1().VirtualMachines(t.Namespace).Get(cmd.Context(), t.Name, metav1.GetOptions{})
			if err != nil {
				return explain(err, "read", t)
			}
			agent := meta.FindStatusCondition(vm.Status.Conditions, v1alpha1.VirtualMachineConditionAgentConnected)
			info := vm.Status.GuestOSInfo
			if info == nil {
				why := "its guest agent has never answered"
				if agent != nil && agent.Message != "" {
					why += " (" + agent.Message + ")"
				}
				return fmt.Errorf("VM %s has no guest information: %s", t.Ref(), why)
			}
			switch output {
			case "json":
				b, err := json.MarshalIndent(info, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(o.Out, "%s\n", b)
				return err
			case "yaml":
				b, err := yaml.Marshal(info)
				if err != nil {
					return err
				}
				_, err = o.Out.Write(b)
				return err
			}
			return printGuestInfo(o.Out, t.Ref(), agent, info)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "print status.guestOSInfo as json or yaml")
	return cmd
}

// printGuestInfo prints the guest information as name: value lines.
func printGuestInfo(out io.Writer, ref string, agent *metav1.Condition, info *v1alpha1.GuestOSInfo) error {
	connected := "unknown"
	if agent != nil {
		connected = "no: " + agent.Message
		if agent.Status == metav1.ConditionTrue {
			connected = "yes"
		}
		connected += " (since " + agent.LastTransitionTime.UTC().Format("2006-01-02T15:04:05Z") + ")"
	}
	os := info.PrettyName
	if os == "" {
		os = info.Name
	}
	if info.Version != "" && !strings.Contains(os, info.Version) {
		os += " " + info.Version
	}
	w := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	for _, row := range [][2]string{
		{"VM", ref},
		{"Agent connected", connected},
		{"OS", os},
		{"OS ID", info.ID},
		{"Version ID", info.VersionID},
		{"Kernel", strings.TrimSpace(info.KernelRelease + " " + info.KernelVersion)},
		{"Machine", info.Machine},
		{"Hostname", info.Hostname},
	} {
		if row[1] == "" {
			continue
		}
		fmt.Fprintf(w, "%s:\t%s\n", row[0], row[1])
	}
	return w.Flush()
}
