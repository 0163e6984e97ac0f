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
// kube-apiserver, kube-controller-manager, vessel-apiserver and a node
// agent) as background processes under a supervisor that restarts any that
// exits (`vessel-up supervise`, left running in the background), and writes
// kubeconfigs; `vessel-up --status` shows their state and `vessel-up
// --down` stops them. `make up`, `make status` and `make down` run it. The
// launcher itself is package launcher; the commands are in app.
package main

import (
	"fmt"
	"os"

	"github.com/vessel-vm/vessel/cmd/vessel-up/app"
)

func main() {
	if err := app.NewCommand().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "vessel-up: %v\n", err)
		os.Exit(1)
	}
}
