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
	"slices"
	"strings"
)

// startOrder lists the control plane's components in the order they
// start; each hypervisor's virtlogd, libvirtd and agent follow (see
// componentNames). They stop in reverse.
var startOrder = []string{etcdName, kubeAPIServerName, kubeControllerManagerName, vesselAPIServerName}

// supervisorName names the supervisor's PID file and log.
const supervisorName = "supervisor"

// component is one process of the control plane: how to start it, what it
// needs running first, and how to tell that it serves. A restart runs the
// same binary with the same arguments, hence the same ports, certificates
// and data directories.
type component struct {
	name string
	// enter, when set, is a command prefix that execs binary (nsenter into
	// a hypervisor's namespaces), so that the process is binary's all the
	// same: its pid, command line and PID file.
	enter  []string
	binary string
	args   []string
	// after names the components that must be ready before this one
	// starts, at the first start and at every restart.
	after []string
	// prepare, when set, runs once before the first start by this
	// launcher (the vessel-apiserver's manifests); its failure counts as
	// a failed start.
	prepare  func(ctx context.Context) error
	prepared bool
	// setup, when set, runs before every start (a hypervisor's
	// namespaces); its failure counts as a failed start.
	setup func(ctx context.Context) error
	// ready waits until p serves, and fails once p exits or the
	// component's ready timeout runs out.
	ready func(ctx context.Context, p *process) error
	// startGroup, when set, makes Start launch this component together
	// with the ones next to it in the same group before it waits for any
	// to be ready: members of an etcd cluster are ready only once a quorum
	// runs.
	startGroup string
	// onExit, when set, runs when a process that was ready exits (a
	// vessel-apiserver replica takes its endpoint out of the Service).
	onExit func(ctx context.Context)

	// proc is the current process, nil before the first start.
	proc *process
}

// components returns the control plane's components in start order.
func (c *Cluster) components() ([]*component, error) {
	kubeAPIServer, err := c.kubeAPIServerComponent()
	if err != nil {
		return nil, err
	}
	kcm, err := c.kubeControllerManagerComponent()
	if err != nil {
		return nil, err
	}
	vesselEtcd, err := c.vesselEtcdComponents()
	if err != nil {
		return nil, err
	}
	vesselAPIServers, err := c.vesselAPIServerComponents()
	if err != nil {
		return nil, err
	}
	comps := []*component{c.etcdComponent(), kubeAPIServer, kcm}
	comps = append(comps, vesselEtcd...)
	comps = append(comps, vesselAPIServers...)
	for _, hv := range c.hypervisors {
		agent, err := c.agentComponent(hv)
		if err != nil {
			return nil, err
		}
		comps = append(comps, c.libvirtHostComponents(hv)...)
		comps = append(comps, agent)
	}
	return comps, nil
}

// componentNames are the names of the components opts run, in start
// order.
func componentNames(opts Options) []string {
	names := slices.Clone(startOrder[:len(startOrder)-1])
	for i := 1; i <= opts.EtcdMembers; i++ {
		names = append(names, VesselEtcdComponent(i))
	}
	names = append(names, vesselAPIServerName)
	for i := 2; i <= opts.APIServers; i++ {
		names = append(names, VesselAPIServerComponent(i))
	}
	if !opts.NoAgent {
		for _, hv := range opts.Hypervisors {
			names = append(names, hypervisorComponentNames(hv)...)
		}
	}
	return names
}

// stopRank orders components for Down and Stop: agents first (they use
// the rest), then libvirtds, their virtlogds, and the control plane in
// reverse start order. Unknown names (a component a later version added)
// go with the agents.
func stopRank(name string) int {
	base, _, _ := strings.Cut(name, "@")
	if base == vesselEtcdName {
		// The vessel-apiservers' storage goes with the others' last.
		base = etcdName
	}
	switch base {
	case agentName:
		return 0
	case libvirtdName:
		return 1
	case virtlogdName:
		return 2
	}
	if i := slices.Index(startOrder, base); i >= 0 {
		return 3 + len(startOrder) - i
	}
	return 0
}

// component returns the named component of a started Cluster.
func (c *Cluster) component(name string) (*component, error) {
	for _, comp := range c.comps {
		if comp.name == name {
			return comp, nil
		}
	}
	return nil, fmt.Errorf("this control plane has no %s", name)
}
