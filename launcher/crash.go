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
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Kill sends SIGKILL to the named component of a Cluster that Start
// started (AgentComponent(hv), LibvirtdComponent(hv), etcd, ...), as a
// crash or the OOM killer would, and waits until it is gone. Nothing
// restarts it (Start runs no supervisor): Restart does.
func (c *Cluster) Kill(name string) error {
	comp, err := c.component(name)
	if err != nil || comp.proc == nil {
		return fmt.Errorf("kill %s: this Cluster did not start it", name)
	}
	p := comp.proc
	// The whole process group: libvirtd runs under vessel-reaper.
	if err := signalGroup(p.pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %s (pid %d): %w", name, p.pid, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) still runs 10s after SIGKILL", name, p.pid)
	}
}

// Restart starts the named component again, with the same command line and
// state, after it died, and waits until it is ready. A hypervisor's
// libvirtd or virtlogd enters the namespaces it ran in.
func (c *Cluster) Restart(ctx context.Context, name string) error {
	comp, err := c.component(name)
	if err != nil || comp.proc == nil {
		return fmt.Errorf("restart %s: this Cluster did not start it", name)
	}
	if comp.proc.running() {
		return fmt.Errorf("restart %s: pid %d still runs; kill it first", name, comp.proc.pid)
	}
	if _, err := c.sup.start(ctx, comp); err != nil {
		return fmt.Errorf("restart %s: %w", name, err)
	}
	return nil
}

// PID is the pid of the named component's process, if it runs.
func (c *Cluster) PID(name string) (int, error) {
	comp, err := c.component(name)
	if err != nil {
		return 0, err
	}
	if comp.proc == nil || !comp.proc.running() {
		return 0, errors.New(name + " does not run")
	}
	return comp.proc.pid, nil
}
