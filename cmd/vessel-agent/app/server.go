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
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/node-agent/agent"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// libvirtConnectTimeout bounds the wait for libvirtd at start.
const libvirtConnectTimeout = 60 * time.Second

// NewCommand is the vessel-agent command.
func NewCommand() *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "vessel-agent",
		Short: "Run the VMs bound to this host's Hypervisor with libvirt",
		Long: `vessel-agent registers this host as a vessel.dev Hypervisor, heartbeats it,
and reconciles the VirtualMachines bound to it with libvirtd (QEMU/KVM, or
TCG when a real KVM probe fails): disks, cloud-init seeds, power state and
status. Guests keep running when the agent stops; a new agent adopts them.`,
		SilenceUsage: true,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			cfg, err := o.Config()
			if err != nil {
				return err
			}
			return Run(c.Context(), cfg)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// Run probes KVM, connects to libvirtd, then runs the node agent, the
// console stream server and the metrics endpoint until ctx ends or one of
// them fails.
func Run(ctx context.Context, c *Config) error {
	logger := klog.FromContext(ctx)
	if len(c.Simulated) > 0 {
		return runSimulated(ctx, c)
	}
	if c.ProbeKVM {
		var why string
		c.Agent.KVM, why = hypervisor.ProbeKVM(ctx, "", c.ProbeKernel, c.ProbeTimeout)
		logger.Info("KVM probe", "kvm", c.Agent.KVM, "result", why)
	}

	go c.Libvirt.Run(ctx)
	waitCtx, cancel := context.WithTimeout(ctx, libvirtConnectTimeout)
	defer cancel()
	if err := c.Libvirt.WaitConnected(waitCtx); err != nil {
		return fmt.Errorf("connect to libvirtd at %s: %w", c.LibvirtSocket, err)
	}

	// The agent stops when the stream server or the metrics endpoint
	// fails, and the other way round.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	streamErr := make(chan error, 2)
	if c.Console != nil {
		go func() {
			if err := c.Console.Serve(ctx, c.ConsoleListener, c.ConsoleTLS); err != nil {
				streamErr <- err
				stop()
			}
		}()
	}
	if c.Metrics != nil {
		logger.Info("Serving metrics", "address", c.Metrics.Addr().String())
		go func() {
			if err := c.Metrics.Run(ctx); err != nil {
				streamErr <- err
				stop()
			}
		}()
	}

	a, err := agent.New(c.Agent)
	if err != nil {
		return err
	}
	err = a.Run(ctx)
	select {
	case serr := <-streamErr:
		return serr
	default:
		return err
	}
}
