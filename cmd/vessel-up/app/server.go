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
		Short: "Start the one-machine Vessel control plane and a node agent under a supervisor, or stop them",
		Long: `vessel-up starts a supervisor in the background (vessel-up supervise,
logging to logs/supervisor.log in the state directory), which starts etcd,
kube-apiserver, kube-controller-manager, the vessel-apiserver (behind its
APIService) and one node agent on this host's libvirtd, and restarts any of
them that exits, with backoff. vessel-up waits until all are ready, writes
kubeconfigs for the admin and the demo tenants, and returns, leaving them
running. On a control plane that runs already it only waits until it is
healthy: it starts a supervisor if there is none (the new one adopts what
runs) and lets it start what is missing.

vessel-up --status shows each component's state, pid, restarts and last
exit; vessel-up --down stops the supervisor, then the components. Guests
keep running through all of it. make up, make status and make down run it.`,
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
			// Ctrl-C while starting stops what this run started.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return Run(ctx, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.AddCommand(newSuperviseCommand())
	// supervise is the one subcommand; it needs no completion script.
	cmd.CompletionOptions.DisableDefaultCmd = true
	return cmd
}

// Run starts the control plane, stops it with --down, or reports on it
// with --status: progress on errOut, the next steps or the status on out.
// ctx bounds the start only: the processes keep running after Run returns.
func Run(ctx context.Context, o *Options, out, errOut io.Writer) error {
	logger := log.New(errOut, "", 0)
	switch {
	case o.Down:
		if err := launcher.Down(o.StateDir); err != nil {
			return fmt.Errorf("stop the control plane in %s: %w", o.StateDir, err)
		}
		logger.Printf("stopped the control plane in %s", o.StateDir)
		return nil
	case o.Status:
		st, err := launcher.ReadStatus(o.StateDir)
		if err != nil {
			return err
		}
		if err := WriteStatus(out, st); err != nil {
			return err
		}
		if !st.Healthy() {
			return fmt.Errorf("the control plane in %s is not running in full", st.StateDir)
		}
		return nil
	}

	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find vessel-up's own binary to run the supervisor: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	res, err := launcher.Up(ctx, o.Config(logger), []string{self, "supervise"})
	if err != nil {
		return err
	}
	if res.AlreadyRunning {
		fmt.Fprintf(out, "Vessel already runs from %s:\n\n", res.Status.StateDir)
		if err := WriteStatus(out, res.Status); err != nil {
			return err
		}
	}
	bin := filepath.Dir(res.Options().VesselAPIServerBinary)
	_, err = fmt.Fprintf(out, `
Vessel is running, supervised: a component that exits is restarted.
State: vessel-up --status (make status). Logs: %[1]s/logs. Stop it with: make down

  export KUBECONFIG=%[2]s
  export PATH=%[3]s:$PATH        # kubectl vm ...
  kubectl get hypervisors
  kubectl apply -f examples/vm.yaml
  kubectl -n team-a wait vm/demo --for=jsonpath='{.status.phase}'=Running --timeout=120s
  kubectl vm -n team-a console demo    # Ctrl+] to detach

Tenants: %[4]s (edit in team-a), %[5]s (view in team-b)
`, res.Status.StateDir, res.Kubeconfig(launcher.AdminKubeconfig), bin, res.Kubeconfig("alice"), res.Kubeconfig("bob"))
	if err != nil {
		return err
	}
	return writeMetricsHowTo(out, res)
}

// writeMetricsHowTo says where the Prometheus metrics are and how to
// scrape them (with the admin's certificate here; Prometheus gets a
// binding to vessel.dev:metrics-scraper, see the README).
func writeMetricsHowTo(out io.Writer, res *launcher.UpResult) error {
	m, err := res.Metrics()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, `
Usage per VM: kubectl vm top -A
Prometheus metrics (HTTPS; the caller needs get on /metrics, ClusterRole vessel.dev:metrics-scraper):
  agent:            %[1]s   (CA %[3]s)
  vessel-apiserver: %[2]s   (CA %[4]s)
  curl --cacert %[3]s --cert %[5]s --key %[6]s %[1]s
`, m.Agent, m.VesselAPIServer, m.AgentCAFile, m.ClusterCAFile, m.AdminCertFile, m.AdminKeyFile)
	return err
}

// newSuperviseCommand is the supervisor process vessel-up starts in the
// background; it runs until SIGTERM (vessel-up --down).
func newSuperviseCommand() *cobra.Command {
	var optionsFile string
	cmd := &cobra.Command{
		Use:   "supervise --options=STATE_DIR/supervisor.json",
		Short: "Run the supervisor in the foreground (vessel-up starts it in the background)",
		Long: `supervise owns the components of one state directory: it adopts those that
run, starts the missing ones in dependency order, and restarts any that exits
(backoff 1s doubling to 30s), recording their state in run/status.json. It
stops on SIGTERM or SIGINT and leaves the components running. vessel-up
writes the options file and starts it; only one runs per state directory.`,
		Args:          cobra.NoArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := launcher.LoadOptions(optionsFile)
			if err != nil {
				return fmt.Errorf("read the supervisor's options: %w", err)
			}
			logger := log.New(cmd.ErrOrStderr(), "", log.LstdFlags)
			opts.Logf = logger.Printf
			// Detached from any terminal; a hangup is none of its business.
			signal.Ignore(syscall.SIGHUP)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err = launcher.Supervise(ctx, opts)
			if errors.Is(err, launcher.ErrSupervisorRunning) {
				logger.Printf("%v: leaving it to that one", err)
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringVar(&optionsFile, "options", "", "the options file vessel-up wrote (STATE_DIR/supervisor.json)")
	_ = cmd.MarkFlagRequired("options")
	return cmd
}
