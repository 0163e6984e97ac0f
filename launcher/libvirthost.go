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

package launcher

import (
	"context"
	"fmt"
)

const (
	virtlogdName = "virtlogd"
	libvirtdName = "libvirtd"
)

// AgentComponent, LibvirtdComponent and VirtlogdComponent name the
// components of a hypervisor, as status, PID files and logs show them.
func AgentComponent(hypervisor string) string { return agentName + "@" + hypervisor }

// LibvirtdComponent names the hypervisor's libvirtd; see AgentComponent.
func LibvirtdComponent(hypervisor string) string { return libvirtdName + "@" + hypervisor }

// VirtlogdComponent names the hypervisor's virtlogd; see AgentComponent.
func VirtlogdComponent(hypervisor string) string { return virtlogdName + "@" + hypervisor }

// hypervisorComponentNames are a hypervisor's components in start order.
func hypervisorComponentNames(hypervisor string) []string {
	return []string{VirtlogdComponent(hypervisor), LibvirtdComponent(hypervisor), AgentComponent(hypervisor)}
}

// libvirtHostComponents are the hypervisor's virtlogd and libvirtd, run in
// its namespaces (see package libvirtd). Before every start the namespaces
// and the fabric are ensured: after a reboot, or if someone removed them,
// they are made again, and otherwise a restarted daemon enters the ones its
// guests run in.
func (c *Cluster) libvirtHostComponents(hv Hypervisor) []*component {
	host := hv.LibvirtHost()
	host.Reaper = c.opts.ReaperBinary
	setup := func(ctx context.Context) error { return c.ensureLibvirtHost(ctx, hv) }
	vl, ld := host.VirtlogdCommand(), host.LibvirtdCommand()
	virtlogd := &component{
		name:   VirtlogdComponent(hv.Name),
		enter:  vl.Enter,
		binary: vl.Path,
		args:   vl.Args,
		setup:  setup,
		ready: func(ctx context.Context, p *process) error {
			return waitCheck(ctx, p, c.opts.ReadyTimeout, host.PingVirtlogd)
		},
	}
	libvirtd := &component{
		name:   LibvirtdComponent(hv.Name),
		enter:  ld.Enter, // ends with vessel-reaper (libvirtd.Host.Reaper)
		binary: ld.Path,
		args:   ld.Args,
		after:  []string{virtlogd.name},
		setup:  setup,
		ready: func(ctx context.Context, p *process) error {
			if err := waitCheck(ctx, p, c.opts.ReadyTimeout, host.Ping); err != nil {
				return err
			}
			// It has checked or probed QEMU's capabilities by now: the
			// next hypervisor to start need not probe again.
			if err := host.SaveCapabilities(); err != nil {
				c.opts.Logf("%s: %v", p.name, err)
			}
			return nil
		},
	}
	return []*component{virtlogd, libvirtd}
}

// ensureLibvirtHost makes the hypervisor's namespaces, configuration and
// fabric link, one hypervisor at a time: they share the fabric.
func (c *Cluster) ensureLibvirtHost(ctx context.Context, hv Hypervisor) error {
	c.networkMu.Lock()
	defer c.networkMu.Unlock()
	host := hv.LibvirtHost()
	if err := host.Ensure(ctx); err != nil {
		return err
	}
	fabric := c.plan.fabric()
	if err := fabric.Ensure(ctx); err != nil {
		return err
	}
	if err := fabric.Attach(ctx, host, fabricPort(hv), hv.Address); err != nil {
		return fmt.Errorf("hypervisor %s: %w", hv.Name, err)
	}
	return nil
}
