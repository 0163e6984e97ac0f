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

// Command vessel-bench-density measures the control plane at density: it
// starts a local control plane (real etcd, kube-apiserver, aggregated
// vessel-apiserver) through the launcher, one vessel-agent process running
// -hypervisors simulated hypervisors (--hypervisor-driver=sim, each agent
// with its own client certificate, heartbeats and informers), then creates
// -vms VirtualMachines through kube-apiserver at -rate per second and
// follows them with a watch. It prints create->bound and create->Running
// percentiles, the scheduler's throughput, watch delays, the time to list
// every VM, and the memory and CPU of each process, every 1,000 VMs and at
// the end; then it checks that every acknowledged VM exists, bound and
// Running.
//
//	go run ./test/bench/density -vms 10000 -hypervisors 100 -rate 100
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type options struct {
	vms         int
	hypervisors int
	rate        float64
	workers     int
	every       int
	settle      time.Duration
	agentBinary string
	agentArgs   string
	profile     string
	keep        bool
	verbose     bool
}

func main() {
	var o options
	flag.IntVar(&o.vms, "vms", 1000, "VirtualMachines to create")
	flag.IntVar(&o.hypervisors, "hypervisors", 10, "simulated hypervisors (one agent process runs them all)")
	flag.Float64Var(&o.rate, "rate", 50, "creates per second, paced")
	flag.IntVar(&o.workers, "workers", 32, "concurrent create requests at most")
	flag.IntVar(&o.every, "every", 1000, "print a progress row every this many VMs created")
	flag.DurationVar(&o.settle, "settle", 5*time.Minute, "how long after the last create every VM may take to be Running")
	flag.StringVar(&o.agentBinary, "agent-binary", "", "the vessel-agent binary (default: _output/bin/vessel-agent, from make build)")
	flag.StringVar(&o.agentArgs, "agent-args", "", "more vessel-agent flags, space separated (for example --sim-boot-latency=200ms)")
	flag.StringVar(&o.profile, "profile", "", "directory for 20 s CPU profiles of kube-apiserver and the vessel-apiserver (run with --profiling), taken from the first create on")
	flag.BoolVar(&o.keep, "keep", false, "keep the state directory (logs) afterwards")
	flag.BoolVar(&o.verbose, "v", false, "log the control plane's start")
	flag.Parse()
	log.SetFlags(log.Ltime)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Fatalf("vessel-bench-density: %v", err)
	}
}

func run(ctx context.Context, o options) error {
	if o.vms < 1 || o.hypervisors < 1 || o.rate <= 0 || o.workers < 1 || o.every < 1 {
		return errors.New("-vms, -hypervisors, -rate, -workers and -every must be positive")
	}
	env, err := startEnvironment(ctx, o)
	if err != nil {
		return err
	}
	defer env.stop(o.keep)
	res, err := runDensity(ctx, env, o)
	if err != nil {
		return err
	}
	res.print(os.Stdout, o)
	if res.problems() != "" {
		return fmt.Errorf("not every VM made it: %s", res.problems())
	}
	return nil
}
