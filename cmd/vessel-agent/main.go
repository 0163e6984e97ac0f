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

// Command vessel-agent is the Vessel node agent: it registers this host as
// a Hypervisor and runs the VMs bound to it with libvirt.
package main

import (
	"os"

	"github.com/spf13/cobra"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/vessel-vm/vessel/node-agent/app"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	o := app.NewOptions()
	cmd := &cobra.Command{
		Use:   "vessel-agent",
		Short: "Run the VMs bound to this host's Hypervisor with libvirt",
		Long: `vessel-agent registers this host as a vessel.dev Hypervisor, heartbeats it,
and reconciles the VirtualMachines bound to it with libvirtd (QEMU/KVM, or
TCG when a real KVM probe fails): disks, cloud-init seeds, power state and
status. Guests keep running when the agent stops; a new agent adopts them.`,
		SilenceUsage: true,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(c.Context())
		},
	}
	cmd.SetContext(ctx)
	o.AddFlags(cmd.Flags())
	os.Exit(cli.Run(cmd))
}
