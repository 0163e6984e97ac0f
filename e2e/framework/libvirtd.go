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

package framework

import (
	"syscall"
	"testing"
	"time"

	"github.com/vessel-vm/vessel/launcher"
)

// RestartLibvirtd stops the hypervisor's libvirtd with SIGTERM, as an
// upgrade would, and has the launcher start it again (in the hypervisor's
// namespaces), waiting until it answers. Guests keep running meanwhile.
func (e *Env) RestartLibvirtd(tb testing.TB, hypervisor string) {
	tb.Helper()
	name := launcher.LibvirtdComponent(hypervisor)
	pid, err := e.Cluster.PID(name)
	if err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		tb.Fatalf("stop %s (pid %d): %v", name, pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := e.Cluster.PID(name); err != nil {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s (pid %d) did not stop within 30s", name, pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := e.Cluster.Restart(tb.Context(), name); err != nil {
		tb.Fatal(err)
	}
}
