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

// startOrder lists the components in the order they start; they stop in
// reverse.
var startOrder = []string{etcdName, kubeAPIServerName, kubeControllerManagerName, vesselAPIServerName, agentName}

// supervisorName names the supervisor's PID file and log.
const supervisorName = "supervisor"

// component is one process of the control plane: how to start it, what it
// needs running first, and how to tell that it serves. A restart runs the
// same binary with the same arguments, hence the same ports, certificates
// and data directories.
type component struct {
	name   string
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
	// ready waits until p serves, and fails once p exits or the
	// component's ready timeout runs out.
	ready func(ctx context.Context, p *process) error

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
	vesselAPIServer, err := c.vesselAPIServerComponent()
	if err != nil {
		return nil, err
	}
	comps := []*component{c.etcdComponent(), kubeAPIServer, kcm, vesselAPIServer}
	if !c.opts.NoAgent {
		agent, err := c.agentComponent()
		if err != nil {
			return nil, err
		}
		comps = append(comps, agent)
	}
	return comps, nil
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
