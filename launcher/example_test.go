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

package launcher_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/vessel-vm/vessel/launcher"
)

// What `make up` does: start the control plane from the default state
// directory and return, leaving it running; `make down` calls Down.
func ExampleStart() {
	stateDir, err := launcher.DefaultStateDir()
	if err != nil {
		log.Fatal(err)
	}
	// vessel-up names the hypervisors after the host; a test would pick
	// names unique to its run instead.
	host, err := os.Hostname()
	if err != nil {
		log.Fatal(err)
	}
	c, err := launcher.Start(context.Background(), launcher.Options{
		StateDir:    stateDir,
		Hypervisors: []string{host + "-1", host + "-2"},
		Logf:        log.Printf,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("export KUBECONFIG=" + c.Kubeconfig(launcher.AdminKubeconfig))
	for _, hv := range c.Hypervisors() {
		fmt.Printf("%s: virsh -c '%s'\n", hv.Name, hv.URI())
	}
	// Exiting now leaves the control plane and the hypervisors running;
	// launcher.Down(stateDir) stops them.
}
