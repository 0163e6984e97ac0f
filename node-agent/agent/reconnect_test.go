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

package agent_test

import (
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// socketProxy forwards a UNIX socket to libvirtd; cut drops every
// connection, which is what the agent sees when libvirtd restarts (without
// restarting the libvirtd other tests use).
type socketProxy struct {
	path  string
	mu    sync.Mutex
	conns []net.Conn
}

func newSocketProxy(t *testing.T) *socketProxy {
	t.Helper()
	p := &socketProxy{path: filepath.Join(t.TempDir(), "libvirt-sock")}
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", hypervisor.DefaultSocket)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *socketProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestLibvirtConnectionLoss: the agent's connection to libvirtd drops while
// a guest runs; the agent reconnects, re-subscribes to lifecycle events and
// carries on: a stop requested after the drop is carried out and seen.
func TestLibvirtConnectionLoss(t *testing.T) {
	requireLibvirt(t)
	proxy := newSocketProxy(t)
	e := newEnvOn(t, proxy.path)
	e.startAgent()
	name := "reconnect-" + rand.String(5)
	e.create(e.guestVM(name, v1alpha1.RunStrategyRerunOnFailure, ""))
	vm := e.waitPhase(name, v1alpha1.VirtualMachineRunning, bootTimeout)
	e.waitConsole(vm, bootTimeout, "VESSEL-BOOT done")
	pid := e.qemuPID(vm)

	proxy.cut()
	time.Sleep(500 * time.Millisecond)
	if got := e.qemuPID(vm); got != pid {
		t.Fatalf("guest restarted when the connection dropped: pid %d -> %d", pid, got)
	}
	vms := e.client.VesselV1alpha1().VirtualMachines(testNamespace)
	if _, err := vms.Stop(e.ctx, name, &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	vm = e.waitPhase(name, v1alpha1.VirtualMachineStopped, 60*time.Second)
	if vm.Status.StopReason != "Requested" {
		t.Errorf("after stop: %s", describe(vm))
	}
	if d := e.domain(vm); d == nil || d.State != hypervisor.StateShutoff {
		t.Errorf("domain after stop: %+v", d)
	}
}
