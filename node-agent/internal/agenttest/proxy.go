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

package agenttest

import (
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/vessel-vm/vessel/node-agent/internal/needs"
)

// SocketProxy forwards a UNIX socket to the tests' libvirtd, so a test can
// take libvirtd away from one agent without touching the libvirtd other
// tests use.
type SocketProxy struct {
	// Path is the proxy's socket: pass it as Options.Socket.
	Path     string
	upstream string

	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

// NewSocketProxy listens on a new socket until the end of the test.
func NewSocketProxy(t *testing.T) *SocketProxy {
	t.Helper()
	p := &SocketProxy{Path: filepath.Join(t.TempDir(), "libvirt-sock"), upstream: needs.Libvirt(t).Socket()}
	ln, err := net.Listen("unix", p.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); p.Cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.forward(c)
		}
	}()
	return p
}

func (p *SocketProxy) forward(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		c.Close()
		return
	}
	up, err := net.Dial("unix", p.upstream)
	if err != nil {
		c.Close()
		return
	}
	p.conns = append(p.conns, c, up)
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	go func() { _, _ = io.Copy(c, up); c.Close() }()
}

// Cut drops every connection, which is what a client sees when libvirtd
// restarts; new connections go through.
func (p *SocketProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Down drops every connection and refuses new ones until Up: libvirtd is
// unreachable.
func (p *SocketProxy) Down() {
	p.mu.Lock()
	p.down = true
	p.mu.Unlock()
	p.Cut()
}

// Up lets connections through again.
func (p *SocketProxy) Up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}
