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

// Package app is the kubectl plugin `kubectl vm`: console, logs, the power
// actions and snapshots of Vessel VMs, with kubectl's own flags
// (--kubeconfig, --context, -n, --as, ...) from k8s.io/cli-runtime.
package app

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"

	"github.com/vessel-vm/vessel/generated/clientset/versioned"
)

// Options are what every subcommand shares.
type Options struct {
	ConfigFlags *genericclioptions.ConfigFlags
	genericiooptions.IOStreams
}

// NewCommand is `kubectl vm`. Subcommands live one per file; a new one
// (snapshot, restore, ...) adds a constructor to the list below.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{ConfigFlags: genericclioptions.NewConfigFlags(true), IOStreams: streams}
	cmd := &cobra.Command{
		Use: "vm",
		// Help and usage say `kubectl vm`, the way the plugin is run.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl vm"},
		Short:       "Work with Vessel virtual machines",
		Long: `kubectl vm drives Vessel virtual machines (vessel.dev VirtualMachines):
attach to their serial console, read its recent output, start, stop,
restart, pause or unpause them, take and restore snapshots, clone them,
show what their QEMU guest agent reports (guestinfo) and the CPU and memory
they use (top). It uses
kubectl's configuration and flags.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.CompletionOptions.HiddenDefaultCmd = true
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	o.ConfigFlags.AddFlags(cmd.PersistentFlags())
	for _, sub := range []func(*Options) *cobra.Command{
		newConsoleCommand,
		newLogsCommand,
		newStartCommand,
		newStopCommand,
		newRestartCommand,
		newPauseCommand,
		newUnpauseCommand,
		newSnapshotCommand,
		newCloneCommand,
		newMigrateCommand,
		newDrainCommand,
		newUncordonCommand,
		newRestoreCommand,
		newTopCommand,
		newGuestInfoCommand,
		newPortForwardCommand,
		newSSHCommand,
		newTunnelCommand,
	} {
		cmd.AddCommand(sub(o))
	}
	return cmd
}

// target is the VM a command acts on, with the clients to reach it.
type target struct {
	Namespace, Name string
	Config          *rest.Config
	Client          versioned.Interface
}

// Ref is namespace/name, as messages print it.
func (t target) Ref() string { return t.Namespace + "/" + t.Name }

func (o *Options) target(name string) (*target, error) {
	cfg, err := o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	ns, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, err
	}
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &target{Namespace: ns, Name: name, Config: cfg, Client: client}, nil
}

// exactlyOneVM is cobra's argument check with a message that says what is missing.
func exactlyOneVM(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s takes the name of one VM, got %d arguments\nUsage: %s", cmd.Name(), len(args), cmd.UseLine())
	}
	return nil
}

// Run executes `kubectl vm` with args, returning the process exit code.
func Run(ctx context.Context, streams genericiooptions.IOStreams, args []string) int {
	cmd := NewCommand(streams)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		// ssh said what went wrong already; its status is the answer.
		if code, ok := err.(exitCode); ok {
			return int(code)
		}
		fmt.Fprintf(streams.ErrOut, "error: %v\n", err)
		return 1
	}
	return 0
}
