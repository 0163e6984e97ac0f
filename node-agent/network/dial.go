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

package network

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// GuestAddress is the address reserved for the first managed interface of
// the VM uid: the only one its guest can use there. The agent connects
// there for port forwarding, never to an address the guest reports.
func (m *Manager) GuestAddress(uid string) (netip.Addr, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var best string
	var addr netip.Addr
	for _, n := range m.state.Networks {
		for key, p := range n.Ports {
			if len(key) > len(uid) && key[:len(uid)+1] == uid+"/" && (best == "" || key < best) {
				best, addr = key, p.IP
			}
		}
	}
	return addr, best != ""
}

// DialGuest opens a TCP connection to port of the VM uid's guest from
// inside the managed network's namespace.
func (m *Manager) DialGuest(ctx context.Context, uid string, port int32) (net.Conn, error) {
	addr, ok := m.GuestAddress(uid)
	if !ok {
		return nil, fmt.Errorf("the VM has no interface on the managed network")
	}
	target := net.JoinHostPort(addr.String(), strconv.Itoa(int(port)))
	return m.inNetns(func() (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", target)
	})
}

// inNetns runs dial in the managed network's namespace (see InNetns).
func (m *Manager) inNetns(dial func() (net.Conn, error)) (net.Conn, error) {
	var c net.Conn
	err := InNetns(m.cfg.Netns, func() error {
		var err error
		c, err = dial()
		return err
	})
	return c, err
}

// InNetns runs fn on a thread that entered the network namespace at path
// (the caller's own when empty): sockets fn makes stay there whichever
// thread uses them later. The thread goes back before other goroutines
// may run on it; if it cannot, it is never handed back (the runtime ends
// it).
func InNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("remember this thread's network namespace: %w", err)
			return
		}
		defer back.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("network namespace: %w", err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		err = fn()
		if unix.Setns(int(back.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	return <-ch
}
