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
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher/pki"
)

const (
	agentName = "vessel-agent"
	// ImagesDir is where `make up` installs the test guest and the one root
	// hostPath disks may come from, for the apiserver and the agent alike.
	ImagesDir = "/var/lib/vessel/images"
)

// HypervisorLabel is on each Hypervisor, with the hypervisor's name, so
// that a VM's nodeSelector can pick one (as kubernetes.io/hostname does for
// pods). Every agent sets it when it registers.
const HypervisorLabel = v1alpha1.LabelHypervisor

// agentComponent runs the node agent of hv, on hv's libvirtd,
// authenticated to kube-apiserver as system:vessel-agent:<name> in
// system:vessel-agents, the identity the VesselAgentRestriction admission
// confines. The agent itself stays in the machine's namespaces: its
// console stream server listens on loopback. It is ready once it has
// reported its Hypervisor Ready after it started.
func (c *Cluster) agentComponent(hv Hypervisor) (*component, error) {
	name := hv.Name
	cert, err := c.PKI.EnsureClientCert("agent-"+name, pki.AgentUserPrefix+name, []string{"system:vessel-agents"})
	if err != nil {
		return nil, fmt.Errorf("agent client certificate: %w", err)
	}
	kubeconfig := c.layout.kubeconfig(AgentComponent(name))
	if err := c.WriteKubeconfig(kubeconfig, "system:vessel-agent:"+name, cert); err != nil {
		return nil, err
	}
	serving, ok := c.PKI.AgentServers[name]
	if !ok {
		return nil, fmt.Errorf("no agent serving certificate for hypervisor %s", name)
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--hypervisor-name=" + name,
		"--libvirt-socket=" + hv.Socket(),
		"--state-dir=" + hv.AgentStateDir(),
		// The managed guest network lives next to the hypervisor's
		// libvirtd, never in the machine's own namespace.
		"--network-namespace=" + hv.Netns,
		"--allowed-host-path-roots=" + ImagesDir,
		fmt.Sprintf("--daemon-endpoint=127.0.0.1:%d", c.Ports.Agents[name]),
		// The console stream server admits only the vessel-apiserver's
		// AgentCA client certificate.
		"--stream-client-ca-file=" + c.PKI.AgentCA.CertFile,
		// Prometheus metrics, same serving certificate; callers need get
		// on /metrics (manifests: vessel.dev:metrics-scraper).
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", c.Ports.AgentMetrics[name]),
	}
	if hv.Address.IsValid() {
		// Incoming live migrations arrive on the fabric only, over
		// mutual TLS between agents.
		args = append(args, "--migration-bind-address="+netip.AddrPortFrom(hv.Address.Addr(), MigrationPort).String())
	}
	if c.opts.AgentServingCertsFromCSR {
		// The agent's key stays in its state directory; the
		// vessel-apiserver signs its CSR.
		args = append(args, "--stream-cert-dir="+ServingCertDir(hv))
	} else {
		// This hypervisor's own serving certificate from AgentCA (the
		// vessel-apiserver accepts no other for it).
		args = append(args, "--stream-cert-file="+serving.CertFile, "--stream-key-file="+serving.KeyFile)
	}
	args = append(args, c.opts.AgentArgs...)
	return &component{
		name:   AgentComponent(name),
		binary: c.opts.AgentBinary,
		args:   args,
		after:  []string{vesselAPIServerName, LibvirtdComponent(name)},
		ready: func(ctx context.Context, p *process) error {
			return c.waitHypervisorReady(ctx, p, name)
		},
	}, nil
}

// MigrationPort is the port each agent accepts live migrations on, at its
// hypervisor's fabric address.
const MigrationPort = 7470

// ServingCertDir is where the agent of hv keeps the serving certificate
// and key it got through the CSR API (Options.AgentServingCertsFromCSR).
func ServingCertDir(hv Hypervisor) string { return filepath.Join(hv.AgentStateDir(), "pki") }

// KillAgent kills the agent of the named hypervisor with SIGKILL (see
// Kill). Its guests keep running.
func (c *Cluster) KillAgent(hypervisor string) error { return c.Kill(AgentComponent(hypervisor)) }

// RestartAgent starts the agent of the named hypervisor again after it
// died (see Restart), and waits until its Hypervisor is Ready.
func (c *Cluster) RestartAgent(ctx context.Context, hypervisor string) error {
	return c.Restart(ctx, AgentComponent(hypervisor))
}

// agentListening says whether the agent of hypervisor name accepts
// connections on its stream and metrics ports.
func (c *Cluster) agentListening(name string) error {
	for what, port := range map[string]int{"stream": c.Ports.Agents[name], "metrics": c.Ports.AgentMetrics[name]} {
		if port == 0 {
			continue
		}
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return fmt.Errorf("Ready, but its %s port does not answer yet: %w", what, err)
		}
		conn.Close()
	}
	return nil
}

// waitHypervisorReady waits until the Hypervisor is Ready with a heartbeat
// from p: after a restart, the condition the previous agent left is still
// True for a while.
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
	// Heartbeat times have whole seconds. An adopted agent has been
	// running for a while: a recent heartbeat (it sends one every 10 s)
	// will do.
	since := metav1.NewTime(p.startedAt.Truncate(time.Second))
	if p.adopted {
		since = metav1.NewTime(p.startedAt.Add(-30 * time.Second))
	}
	last := "not registered yet"
	for {
		if !p.running() {
			return fmt.Errorf("%s exited while starting; end of %s:\n%s", p.name, p.logFile, p.logTail())
		}
		hv, err := client.VesselV1alpha1().Hypervisors().Get(ctx, name, metav1.GetOptions{})
		switch {
		case err != nil:
			last = err.Error()
		case !meta.IsStatusConditionTrue(hv.Status.Conditions, v1alpha1.HypervisorConditionReady):
			last = "registered, not Ready"
		case hv.Status.LastHeartbeatTime == nil || hv.Status.LastHeartbeatTime.Before(&since):
			last = "Ready, but no heartbeat from this agent process yet"
		default:
			// Heartbeats have whole seconds: one the killed agent sent in
			// the second this one started passes the test above. Its
			// listeners died with it, so this process is serving once
			// they answer again.
			if err := c.agentListening(name); err != nil {
				last = err.Error()
				break
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hypervisor %s not Ready (%s): %w; end of %s:\n%s", name, last, ctx.Err(), p.logFile, p.logTail())
		case <-time.After(readyPollInterval):
		}
	}
}
