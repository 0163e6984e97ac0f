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

	"github.com/spf13/cobra"

	"github.com/vessel-vm/vessel/apiserver"
)

// NewCommand is the vessel-apiserver command. It runs until its context
// (cmd.SetContext, or ExecuteContext) is done.
func NewCommand() *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "vessel-apiserver",
		Short: "Serve the vessel.dev API (virtual machines) behind kube-apiserver",
		Long: `vessel-apiserver serves VirtualMachines, snapshots, restores and Hypervisors
as the aggregated API group vessel.dev. Without --etcd-servers it runs an
embedded etcd in --etcd-data-dir.`,
		SilenceUsage: true,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return Run(c.Context(), o)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// Run starts the embedded etcd when no --etcd-servers are given, serves until
// ctx is done, then drains in-flight requests before closing etcd, so no
// acknowledged write is lost. o must be completed and valid.
func Run(ctx context.Context, o *Options) error {
	if o.embeddedEtcd() {
		etcd, err := apiserver.StartEmbeddedEtcd(o.EtcdDataDir, o.EtcdListen)
		if err != nil {
			return err
		}
		defer etcd.Close()
		o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList = []string{etcd.ClientURL()}
	}
	config, err := o.Config()
	if err != nil {
		return err
	}
	server, err := config.Complete().New()
	if err != nil {
		return err
	}
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}
