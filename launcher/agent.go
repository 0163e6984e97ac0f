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
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
)

const (
	agentName = "vessel-agent"
	// ImagesDir is where `make up` installs the test guest and the one root
	// hostPath disks may come from, for the apiserver and the agent alike.
	ImagesDir = "/var/lib/vessel/images"
)

// startAgent runs one node agent on this host, authenticated to
// kube-apiserver as system:vessel-agent:<host> in system:vessel-agents,
// the identity the VesselAgentRestriction admission confines, and waits
// until its Hypervisor is Ready.
func (c *Cluster) startAgent(ctx context.Context) error {
	name := c.opts.HypervisorName
	cert, err := c.PKI.EnsureClientCert("agent-"+name, "system:vessel-agent:"+name, []string{"system:vessel-agents"})
	if err != nil {
		return fmt.Errorf("agent client certificate: %w", err)
	}
	kubeconfig := c.layout.kubeconfig(agentName)
	if err := c.WriteKubeconfig(kubeconfig, "system:vessel-agent:"+name, cert); err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--hypervisor-name=" + name,
		"--state-dir=" + filepath.Join(c.layout.root, "agent"),
		"--allowed-host-path-roots=" + ImagesDir,
		fmt.Sprintf("--daemon-endpoint=127.0.0.1:%d", c.Ports.Agent),
		// The console stream server: serving certificate from AgentCA,
		// and only the vessel-apiserver's AgentCA client certificate in.
		"--stream-cert-file=" + c.PKI.AgentServer.CertFile,
		"--stream-key-file=" + c.PKI.AgentServer.KeyFile,
		"--stream-client-ca-file=" + c.PKI.AgentCA.CertFile,
	}
	args = append(args, c.opts.AgentArgs...)
	p, err := startProcess(c.layout, agentName, c.opts.AgentBinary, args)
	if err != nil {
		return err
	}
	c.agentArgs = args
	c.procs = append(c.procs, p)
	return c.waitHypervisorReady(ctx, p, name)
}

// KillAgent kills the node agent with SIGKILL, as a crash or an OOM kill
// would, and waits until it is gone. Its guests keep running.
func (c *Cluster) KillAgent() error {
	i := slices.IndexFunc(c.procs, func(p *process) bool { return p.name == agentName })
	if i < 0 {
		return errors.New("kill vessel-agent: this Cluster did not start one")
	}
	p := c.procs[i]
	if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill vessel-agent (pid %d): %w", p.pid, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("vessel-agent (pid %d) still runs 10s after SIGKILL", p.pid)
	}
}

// RestartAgent starts the agent again, with the same flags and state, after
// it died, and waits until its Hypervisor is Ready.
func (c *Cluster) RestartAgent(ctx context.Context) error {
	i := slices.IndexFunc(c.procs, func(p *process) bool { return p.name == agentName })
	if i < 0 || c.agentArgs == nil {
		return errors.New("restart vessel-agent: this Cluster did not start one")
	}
	if c.procs[i].running() {
		return fmt.Errorf("restart vessel-agent: pid %d still runs; kill it first", c.procs[i].pid)
	}
	p, err := startProcess(c.layout, agentName, c.opts.AgentBinary, c.agentArgs)
	if err != nil {
		return fmt.Errorf("restart vessel-agent: %w", err)
	}
	c.procs[i] = p
	return c.waitHypervisorReady(ctx, p, c.opts.HypervisorName)
}

func (c *Cluster) waitHypervisorReady(ctx context.Context, p *process, name string) error {
	cfg, err := c.AdminConfig()
	if err != nil {
		return err
	}
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.ReadyTimeout)
	defer cancel()
	last := "not registered yet"
	for {
		if !p.running() {
			return fmt.Errorf("%s exited while starting; end of %s:\n%s", p.name, p.logFile, p.logTail())
		}
		hv, err := client.VesselV1alpha1().Hypervisors().Get(ctx, name, metav1.GetOptions{})
		switch {
		case err != nil:
			last = err.Error()
		case meta.IsStatusConditionTrue(hv.Status.Conditions, v1alpha1.HypervisorConditionReady):
			return nil
		default:
			last = "registered, not Ready"
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hypervisor %s not Ready (%s): %w; end of %s:\n%s", name, last, ctx.Err(), p.logFile, p.logTail())
		case <-time.After(readyPollInterval):
		}
	}
}
