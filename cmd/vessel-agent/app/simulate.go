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
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/node-agent/agent"
	"github.com/vessel-vm/vessel/node-agent/hypervisor/sim"
	"github.com/vessel-vm/vessel/node-agent/metrics"
)

// Hypervisor drivers.
const (
	DriverLibvirt = "libvirt"
	DriverSim     = "sim"
)

// SimulationOptions are the flags of --hypervisor-driver=sim: how many
// simulated hypervisors this process runs, each an agent with its own API
// identity (its own kubeconfig), and how fast and big they are.
type SimulationOptions struct {
	// Hypervisors is how many; above one they are named Prefix1..PrefixN
	// and each reaches the API with KubeconfigDir/<name>.kubeconfig, so
	// that the server confines each to its own objects.
	Hypervisors   int
	Prefix        string
	KubeconfigDir string
	Latencies     sim.Latencies
	// CPUs and Memory are each simulated host's capacity.
	CPUs   int32
	Memory string
}

// NewSimulationOptions returns the defaults: one hypervisor, latencies of
// a small real one (a libvirt call, a QEMU start, a guest's shutdown).
func NewSimulationOptions() SimulationOptions {
	return SimulationOptions{
		Hypervisors: 1,
		Prefix:      "sim-",
		Latencies: sim.Latencies{
			Call:          time.Millisecond,
			Boot:          50 * time.Millisecond,
			GuestShutdown: time.Second,
		},
		CPUs:   64,
		Memory: "256Gi",
	}
}

// AddFlags registers the simulation flags on fs.
func (o *SimulationOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.Hypervisors, "simulate-hypervisors", o.Hypervisors, "with --hypervisor-driver=sim: how many simulated hypervisors this process runs (above 1: named --hypervisor-prefix1..N, each with --kubeconfig-dir/<name>.kubeconfig)")
	fs.StringVar(&o.Prefix, "hypervisor-prefix", o.Prefix, "with --simulate-hypervisors above 1: prefix of the simulated hypervisors' names")
	fs.StringVar(&o.KubeconfigDir, "kubeconfig-dir", o.KubeconfigDir, "with --simulate-hypervisors above 1: directory of one kubeconfig per simulated hypervisor, <name>.kubeconfig, each its own agent identity")
	fs.DurationVar(&o.Latencies.Call, "sim-call-latency", o.Latencies.Call, "with --hypervisor-driver=sim: added to every hypervisor call")
	fs.DurationVar(&o.Latencies.Boot, "sim-boot-latency", o.Latencies.Boot, "with --hypervisor-driver=sim: how long starting a domain takes")
	fs.DurationVar(&o.Latencies.GuestShutdown, "sim-shutdown-latency", o.Latencies.GuestShutdown, "with --hypervisor-driver=sim: how long a guest takes to answer an ACPI shutdown")
	fs.Int32Var(&o.CPUs, "sim-cpus", o.CPUs, "with --hypervisor-driver=sim: host CPUs of each simulated hypervisor")
	fs.StringVar(&o.Memory, "sim-memory", o.Memory, "with --hypervisor-driver=sim: host memory of each simulated hypervisor")
}

// validateSimulation checks the driver and, with sim, its flags.
func (o *Options) validateSimulation() []error {
	s := o.Simulation
	var errs []error
	switch o.Driver {
	case DriverLibvirt:
		if s.Hypervisors != 1 {
			errs = append(errs, errors.New("--simulate-hypervisors needs --hypervisor-driver=sim"))
		}
		return errs
	case DriverSim:
	default:
		return []error{fmt.Errorf("--hypervisor-driver must be %s or %s, got %q", DriverLibvirt, DriverSim, o.Driver)}
	}
	if s.Hypervisors < 1 {
		errs = append(errs, fmt.Errorf("--simulate-hypervisors must be at least 1, got %d", s.Hypervisors))
	}
	if s.Hypervisors > 1 && s.KubeconfigDir == "" {
		errs = append(errs, errors.New("--simulate-hypervisors above 1 needs --kubeconfig-dir: each simulated hypervisor has its own identity"))
	}
	if s.Latencies.Call < 0 || s.Latencies.Boot < 0 || s.Latencies.GuestShutdown < 0 {
		errs = append(errs, errors.New("simulated latencies must not be negative"))
	}
	if s.CPUs < 1 {
		errs = append(errs, fmt.Errorf("--sim-cpus must be at least 1, got %d", s.CPUs))
	}
	if q, err := resource.ParseQuantity(s.Memory); err != nil || q.Sign() <= 0 {
		errs = append(errs, fmt.Errorf("--sim-memory must be a positive quantity, got %q", s.Memory))
	}
	if o.StreamCertFile != "" || o.StreamCertDir != "" {
		errs = append(errs, errors.New("a simulated hypervisor has no consoles: --stream-cert-file and --stream-cert-dir need --hypervisor-driver=libvirt"))
	}
	return errs
}

// simulatedHypervisor is one simulated hypervisor's name and kubeconfig.
type simulatedHypervisor struct {
	name, kubeconfig string
}

// simulated lists the simulated hypervisors the options name.
func (o *Options) simulated() []simulatedHypervisor {
	s := o.Simulation
	if s.Hypervisors == 1 {
		return []simulatedHypervisor{{o.HypervisorName, o.Kubeconfig}}
	}
	out := make([]simulatedHypervisor, s.Hypervisors)
	for i := range out {
		name := fmt.Sprintf("%s%d", s.Prefix, i+1)
		out[i] = simulatedHypervisor{name, filepath.Join(s.KubeconfigDir, name+".kubeconfig")}
	}
	return out
}

// simulatedConfig builds one agent per simulated hypervisor. They touch
// nothing on the host but their state directories (<state-dir>/<name>):
// no libvirtd, no image downloads or disk files, no managed network, no
// console stream server (the API server answers that the hypervisor has
// no console endpoint).
func (o *Options) simulatedConfig() (*Config, error) {
	c := &Config{}
	registry := metrics.NewRegistry(metrics.Options{Hypervisor: o.HypervisorName, Version: Version})
	var servesEventsOnce *bool
	for _, hv := range o.simulated() {
		restConfig, err := o.restConfigFrom(hv.kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig of simulated hypervisor %s: %w", hv.name, err)
		}
		restConfig.UserAgent = "vessel-agent/" + Version + " (simulated)"
		client, err := versioned.NewForConfig(restConfig)
		if err != nil {
			return nil, fmt.Errorf("build vessel.dev client: %w", err)
		}
		events, err := o.simulatedEvents(restConfig, &servesEventsOnce)
		if err != nil {
			return nil, err
		}
		c.Simulated = append(c.Simulated, agent.Config{
			Client:                client,
			Events:                events,
			Hypervisor:            sim.New(o.Simulation.Latencies),
			HypervisorName:        hv.name,
			Labels:                o.NodeLabels,
			StateDir:              filepath.Join(o.StateDir, hv.name),
			AllowedHostPathRoots:  o.AllowedHostPathRoots,
			WritableHostPathRoots: o.WritableHostPathRoots,
			Capacity: v1alpha1.HypervisorResources{
				CPUs:   o.Simulation.CPUs,
				Memory: resource.MustParse(o.Simulation.Memory),
			},
			ReservedCPUs:       o.ReservedCPUs,
			CPUAllocationRatio: o.CPUAllocationRatio,
			ReservedMemory:     resource.MustParse(o.ReservedMemory),
			MaxVMs:             o.MaxVMs,
			AgentVersion:       Version,
			HeartbeatInterval:  o.HeartbeatInterval,
			ResyncPeriod:       o.ResyncPeriod,
			Workers:            o.Workers,
			Simulated:          true,
		})
	}
	if o.Metrics.BindAddress != "" {
		var err error
		if c.Metrics, err = metrics.NewServer(o.Metrics, registry); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// simulatedEvents is the core client Events go through, per --events;
// whether the server serves them is asked once for all hypervisors.
func (o *Options) simulatedEvents(restConfig *rest.Config, serves **bool) (kubernetes.Interface, error) {
	if o.Events == "false" {
		return nil, nil
	}
	kc, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, fmt.Errorf("build core client: %w", err)
	}
	if o.Events == "true" {
		return kc, nil
	}
	if *serves == nil {
		ok := servesEvents(kc)
		*serves = &ok
	}
	if !**serves {
		return nil, nil
	}
	return kc, nil
}

// runSimulated runs the simulated hypervisors' agents, and the metrics
// endpoint when there is one, until ctx ends or one fails.
func runSimulated(ctx context.Context, c *Config) error {
	logger := klog.FromContext(ctx)
	logger.Info("Running simulated hypervisors: no guests, no host files", "count", len(c.Simulated))
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		stop()
	}
	if c.Metrics != nil {
		logger.Info("Serving metrics", "address", c.Metrics.Addr().String())
		wg.Go(func() {
			if err := c.Metrics.Run(ctx); err != nil {
				fail(err)
			}
		})
	}
	for _, cfg := range c.Simulated {
		a, err := agent.New(cfg)
		if err != nil {
			stop()
			wg.Wait()
			return err
		}
		wg.Go(func() {
			defer cfg.Hypervisor.(*sim.Hypervisor).Close()
			if err := a.Run(ctx); err != nil {
				fail(fmt.Errorf("simulated hypervisor %s: %w", cfg.HypervisorName, err))
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
