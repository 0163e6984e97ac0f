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

// Command vessel-up starts the one-machine Vessel control plane (etcd,
// kube-apiserver, vessel-apiserver and a node agent) as background
// processes and writes kubeconfigs; `vessel-up --down` stops it. `make up`
// and `make down` run it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/vessel-vm/vessel/launcher"
)

func main() {
	stateDir := flag.String("state-dir", "", "state directory (default: .vessel at the repository root)")
	down := flag.Bool("down", false, "stop everything a previous run started")
	hypervisor := flag.String("hypervisor-name", "", "the agent's Hypervisor name (default: the host name)")
	flag.Parse()
	log.SetFlags(0)
	if *stateDir == "" {
		dir, err := launcher.DefaultStateDir()
		if err != nil {
			log.Fatal(err)
		}
		*stateDir = dir
	}
	if *down {
		if err := launcher.Down(*stateDir); err != nil {
			log.Fatalf("vessel-up --down: %v", err)
		}
		log.Printf("stopped the control plane in %s", *stateDir)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := launcher.Start(ctx, launcher.Options{StateDir: *stateDir, HypervisorName: *hypervisor, Logf: log.Printf})
	if err != nil {
		log.Fatalf("vessel-up: %v", err)
	}
	bin := filepath.Dir(c.Options().VesselAPIServerBinary)
	fmt.Printf(`
Vessel is running. Logs: %[1]s/logs, stop it with: make down

  export KUBECONFIG=%[2]s
  export PATH=%[3]s:$PATH        # kubectl vm ...
  kubectl get hypervisors
  kubectl apply -f examples/vm.yaml
  kubectl -n team-a wait vm/demo --for=jsonpath='{.status.phase}'=Running --timeout=120s
  kubectl vm -n team-a console demo    # Ctrl+] to detach

Tenants: %[4]s (edit in team-a), %[5]s (view in team-b)
`, c.StateDir, c.Kubeconfig(launcher.AdminKubeconfig), bin, c.Kubeconfig("alice"), c.Kubeconfig("bob"))
}
