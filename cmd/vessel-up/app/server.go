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
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vessel-vm/vessel/launcher"
)

// NewCommand is the vessel-up command.
func NewCommand() *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "vessel-up",
		Short: "Start the one-machine Vessel control plane and its hypervisors under a supervisor, or stop them",
		Long: `vessel-up starts a supervisor in the background (vessel-up supervise,
logging to logs/supervisor.log in the state directory), which starts etcd,
kube-apiserver, kube-controller-manager, the vessel-apiserver (behind its
APIService) and --hypervisors hypervisors (default 2), <prefix>-1 ... each a
virtlogd and a libvirtd of its own, in a mount and network namespace of its
own, and a node agent on that libvirtd; the hypervisors' namespaces are
connected by a fabric. It restarts any process that exits, with backoff.
vessel-up waits until all are ready, writes kubeconfigs for the admin and
the demo tenants, and returns, leaving them running. On a control plane that
runs already it only waits until it is healthy: it starts a supervisor if
there is none (the new one adopts what runs) and lets it start what is
missing.

vessel-up --status shows each component's state, pid, restarts and last
exit, and the hypervisors; vessel-up --down stops the supervisor, then the
components. Guests keep running through all of it, in their hypervisors'
namespaces, and the next vessel-up adopts them. vessel-up --destroy also
kills the guests and removes the namespaces. make up, make status and make
down run it.`,
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
		if hvs, err := launcher.Hypervisors(o.StateDir); err == nil {
			for _, hv := range hvs {
				if pids, _ := hv.LibvirtHost().QEMUPIDs(); len(pids) > 0 {
					logger.Printf("%s: guests keep running (QEMU pids %v) in network namespace %s, with their virtlogd; the next vessel-up adopts them, vessel-up --destroy ends them", hv.Name, pids, hv.Netns)
				}
			}
		}
		return nil
	case o.Destroy:
		if err := launcher.Destroy(o.StateDir); err != nil {
			return err
		}
		logger.Printf("stopped the control plane in %s and removed its hypervisors", o.StateDir)
		return nil
	case o.Status:
		st, err := launcher.ReadStatus(o.StateDir)
		if err != nil {
			return err
		}
		if err := WriteStatus(out, st); err != nil {
			return err
		}
		hvs, err := launcher.Hypervisors(o.StateDir)
		if err != nil {
			return err
		}
		fmt.Fprintln(out)
		if err := WriteHypervisors(out, hvs); err != nil {
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
	hvs, err := launcher.Hypervisors(res.Status.StateDir)
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	if err := WriteHypervisors(out, hvs); err != nil {
		return err
	}
	bin := filepath.Dir(res.Options().VesselAPIServerBinary)
	_, err = fmt.Fprintf(out, `
Vessel is running, supervised: a component that exits is restarted.
State: vessel-up --status (make status). Logs: %[1]s/logs. Stop it with: make down

  export KUBECONFIG=%[2]s
  export PATH=%[3]s:$PATH        # kubectl vm ...
  kubectl get hypervisors              # %[6]d, each with a libvirtd of its own (see above)
  kubectl apply -f examples/vm.yaml
  kubectl -n team-a wait vm/demo --for=jsonpath='{.status.phase}'=Running --timeout=120s
  kubectl vm -n team-a console demo    # Ctrl+] to detach

Tenants: %[4]s (edit in team-a), %[5]s (view in team-b)
`, res.Status.StateDir, res.Kubeconfig(launcher.AdminKubeconfig), bin, res.Kubeconfig("alice"), res.Kubeconfig("bob"), len(hvs))
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
	var b strings.Builder
	fmt.Fprintf(&b, "\nUsage per VM: kubectl vm top -A\n")
	fmt.Fprintf(&b, "Prometheus metrics (HTTPS; the caller needs get on /metrics, ClusterRole vessel.dev:metrics-scraper):\n")
	hvs := slices.Sorted(maps.Keys(m.Agents))
	for _, hv := range hvs {
		fmt.Fprintf(&b, "  agent of %s: %s   (CA %s)\n", hv, m.Agents[hv], m.AgentCAFile)
	}
	fmt.Fprintf(&b, "  vessel-apiserver: %s   (CA %s)\n", m.VesselAPIServer, m.ClusterCAFile)
	if len(hvs) > 0 {
		fmt.Fprintf(&b, "  curl --cacert %s --cert %s --key %s %s\n", m.AgentCAFile, m.AdminCertFile, m.AdminKeyFile, m.Agents[hvs[0]])
	}
	_, err = io.WriteString(out, b.String())
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
