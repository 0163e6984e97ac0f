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
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vessel-vm/vessel/launcher"
)

// NewCommand is the vessel-up command.
func NewCommand() *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "vessel-up",
		Short: "Start the one-machine Vessel control plane and a node agent, or stop them",
		Long: `vessel-up starts etcd, kube-apiserver, kube-controller-manager, the
vessel-apiserver (behind its APIService) and one node agent on this host's
libvirtd as background processes, writes kubeconfigs for the admin and the
demo tenants, and returns, leaving them running. vessel-up --down stops them.
make up and make down run it.`,
		Args: cobra.NoArgs,
		// main prints the error, once, as one line.
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			// Ctrl-C while starting stops what has started so far.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return Run(ctx, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// Run starts the control plane, or stops it with --down, reporting progress
// on errOut and the next steps on out. ctx bounds the start only: the
// processes keep running after Run returns.
func Run(ctx context.Context, o *Options, out, errOut io.Writer) error {
	logger := log.New(errOut, "", 0)
	if o.Down {
		if err := launcher.Down(o.StateDir); err != nil {
			return fmt.Errorf("stop the control plane in %s: %w", o.StateDir, err)
		}
		logger.Printf("stopped the control plane in %s", o.StateDir)
		return nil
	}
	c, err := launcher.Start(ctx, o.Config(logger))
	if err != nil {
		return err
	}
	bin := filepath.Dir(c.Options().VesselAPIServerBinary)
	_, err = fmt.Fprintf(out, `
Vessel is running. Logs: %[1]s/logs, stop it with: make down

  export KUBECONFIG=%[2]s
  export PATH=%[3]s:$PATH        # kubectl vm ...
  kubectl get hypervisors
  kubectl apply -f examples/vm.yaml
  kubectl -n team-a wait vm/demo --for=jsonpath='{.status.phase}'=Running --timeout=120s
  kubectl vm -n team-a console demo    # Ctrl+] to detach

Tenants: %[4]s (edit in team-a), %[5]s (view in team-b)
`, c.StateDir, c.Kubeconfig(launcher.AdminKubeconfig), bin, c.Kubeconfig("alice"), c.Kubeconfig("bob"))
	return err
}
