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

package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher"
	"github.com/vessel-vm/vessel/launcher/pki"
)

// simPrefix names the simulated hypervisors: sim-1 ... sim-N.
const simPrefix = "sim-"

// environment is the control plane and the simulated agents' process.
type environment struct {
	stateDir string
	cluster  *launcher.Cluster
	agents   *exec.Cmd
	// exited is closed when the agent process has exited.
	exited chan struct{}
	admin  *rest.Config
	procs  procs
}

// startEnvironment starts the control plane, then the simulated
// hypervisors' agent process, and waits until every hypervisor is Ready.
func startEnvironment(ctx context.Context, o options) (*environment, error) {
	stateDir, err := os.MkdirTemp("", "vessel-bench-density-")
	if err != nil {
		return nil, err
	}
	logf := func(string, ...any) {}
	if o.verbose {
		logf = log.Printf
	}
	begin := time.Now()
	opts := launcher.Options{StateDir: stateDir, NoAgent: true, Logf: logf}
	if o.profile != "" {
		opts.VesselAPIServerArgs = []string{"--profiling=true"}
	}
	c, err := launcher.Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start a control plane (state in %s): %w", stateDir, err)
	}
	env := &environment{stateDir: stateDir, cluster: c}
	log.Printf("control plane up in %v (state in %s)", time.Since(begin).Round(time.Millisecond), stateDir)
	if env.admin, err = c.AdminConfig(); err != nil {
		env.stop(o.keep)
		return nil, err
	}
	// Measure the servers, not client-go's rate limiter.
	env.admin.QPS, env.admin.Burst = -1, 0
	if env.procs, err = controlPlaneProcs(stateDir); err != nil {
		env.stop(o.keep)
		return nil, err
	}
	if err := env.startAgents(ctx, o); err != nil {
		env.stop(o.keep)
		return nil, err
	}
	return env, nil
}

// startAgents gives each simulated hypervisor its own agent identity (a
// client certificate for system:vessel-agent:<name> in
// system:vessel-agents, which the VesselAgentRestriction admission
// confines to that hypervisor), starts one vessel-agent process that runs
// them all, and waits until each has registered Ready.
func (env *environment) startAgents(ctx context.Context, o options) error {
	binary := o.agentBinary
	if binary == "" {
		dir, err := launcher.DefaultBinDir()
		if err != nil {
			return err
		}
		binary = filepath.Join(dir, "vessel-agent")
	}
	kubeconfigs := filepath.Join(env.stateDir, "sim-kubeconfigs")
	if err := os.MkdirAll(kubeconfigs, 0o700); err != nil {
		return err
	}
	begin := time.Now()
	for i := 1; i <= o.hypervisors; i++ {
		name := fmt.Sprintf("%s%d", simPrefix, i)
		cert, err := env.cluster.PKI.EnsureClientCert("agent-"+name, pki.AgentUserPrefix+name, []string{"system:vessel-agents"})
		if err != nil {
			return fmt.Errorf("client certificate of %s: %w", name, err)
		}
		if err := env.cluster.WriteKubeconfig(filepath.Join(kubeconfigs, name+".kubeconfig"), pki.AgentUserPrefix+name, cert); err != nil {
			return err
		}
	}
	// Room for every VM, spread or not.
	maxVMs := max(110, 2*((o.vms+o.hypervisors-1)/o.hypervisors))
	args := []string{
		"--hypervisor-driver=sim",
		fmt.Sprintf("--simulate-hypervisors=%d", o.hypervisors),
		"--hypervisor-prefix=" + simPrefix,
		"--kubeconfig-dir=" + kubeconfigs,
		"--hypervisor-name=sim",
		"--state-dir=" + filepath.Join(env.stateDir, "sim-agents"),
		fmt.Sprintf("--max-vms=%d", maxVMs),
	}
	if o.agentArgs != "" {
		args = append(args, strings.Fields(o.agentArgs)...)
	}
	logFile, err := os.Create(filepath.Join(env.stateDir, "sim-agents.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", binary, err)
	}
	env.agents = cmd
	env.exited = make(chan struct{})
	go func() { cmd.Wait(); close(env.exited) }()
	env.procs["vessel-agent (sim)"] = cmd.Process.Pid
	if err := env.waitHypervisorsReady(ctx, o.hypervisors, 3*time.Minute); err != nil {
		return fmt.Errorf("%w (agent log: %s)", err, logFile.Name())
	}
	log.Printf("%d simulated hypervisors Ready in %v", o.hypervisors, time.Since(begin).Round(time.Millisecond))
	return nil
}

func (env *environment) waitHypervisorsReady(ctx context.Context, n int, timeout time.Duration) error {
	client, err := versioned.NewForConfig(env.admin)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	ready := 0
	for time.Now().Before(deadline) {
		select {
		case <-env.exited:
			return fmt.Errorf("the agent process exited")
		default:
		}
		list, err := client.VesselV1alpha1().Hypervisors().List(ctx, metav1.ListOptions{})
		if err == nil {
			ready = 0
			for _, hv := range list.Items {
				if strings.HasPrefix(hv.Name, simPrefix) && meta.IsStatusConditionTrue(hv.Status.Conditions, v1alpha1.HypervisorConditionReady) {
					ready++
				}
			}
			if ready == n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("%d of %d simulated hypervisors Ready after %v", ready, n, timeout)
}

// stop ends the agents, then the control plane.
func (env *environment) stop(keep bool) {
	if env.agents != nil && env.agents.Process != nil {
		env.agents.Process.Signal(syscall.SIGTERM)
		select {
		case <-env.exited:
		case <-time.After(10 * time.Second):
			env.agents.Process.Kill()
			<-env.exited
		}
	}
	env.cluster.Stop()
	if keep {
		log.Printf("state kept in %s", env.stateDir)
		return
	}
	os.RemoveAll(env.stateDir)
}
