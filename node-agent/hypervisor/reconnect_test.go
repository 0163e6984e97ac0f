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

package hypervisor

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vessel-vm/vessel/node-agent/internal/needs"
)

// proxy forwards a UNIX socket to the tests' libvirtd and can cut every
// connection, as a libvirtd restart does, without disturbing libvirtd
// itself.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t *testing.T) *proxy {
	upstream := needs.Libvirt(t).Socket()
	path := filepath.Join(t.TempDir(), "libvirt-sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", upstream)
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

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestReconnect: when the connection to libvirtd drops, calls fail with
// ErrDisconnected, the client reconnects by itself, re-subscribes to events
// and says so with a resync event.
func TestReconnect(t *testing.T) {
	p := newProxy(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := NewLibvirt(p.ln.Addr().String())
	go l.Run(ctx)

	waitResync := func() {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case ev := <-l.Events():
				if ev.UUID == "" {
					return
				}
			case <-deadline:
				t.Fatal("no resync event after connecting")
			}
		}
	}
	waitResync()
	if _, err := l.Versions(ctx); err != nil {
		t.Fatalf("versions: %v", err)
	}
	if _, err := l.Lookup(ctx, "00000000-0000-0000-0000-00000000beef"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup of a missing domain: %v, want ErrNotFound", err)
	}

	p.cut()
	waitResync()
	v, err := l.Versions(ctx)
	if err != nil {
		t.Fatalf("versions after reconnect: %v", err)
	}
	if v.Libvirt == "" || v.QEMU == "" {
		t.Errorf("versions = %+v", v)
	}
	if _, err := l.List(ctx); err != nil {
		t.Errorf("list after reconnect: %v", err)
	}
}
