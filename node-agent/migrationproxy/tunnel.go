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

package migrationproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"

	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/node-agent/network"
)

// Peer is the target of a migration, as the source agent reaches it.
type Peer struct {
	Creds Credentials
	// Hypervisor is the target's name (its certificate's).
	Hypervisor string
	// Endpoint is its migration endpoint (host:port on the fabric).
	Endpoint string
	// Migration is the VirtualMachineMigration, namespace/name.
	Migration string
	// Netns is the source hypervisor's network namespace: the fabric is
	// reached from there.
	Netns string
}

// dial opens an authenticated stream to the target.
func (p Peer) dial(ctx context.Context, h Header) (net.Conn, *bufio.Reader, error) {
	var raw net.Conn
	err := network.InNetns(p.Netns, func() error {
		var d net.Dialer
		var err error
		raw, err = d.DialContext(ctx, "tcp", p.Endpoint)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s at %s: %w", p.Hypervisor, p.Endpoint, err)
	}
	conn := tls.Client(raw, p.Creds.clientTLS(p.Hypervisor))
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, nil, fmt.Errorf("TLS with %s at %s: %w", p.Hypervisor, p.Endpoint, err)
	}
	if err := writeLine(conn, h); err != nil {
		conn.Close()
		return nil, nil, err
	}
	r := bufio.NewReader(conn)
	var rep reply
	if err := readLine(r, maxHeader, &rep); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("%s stream to %s: %w", h.Stream, p.Hypervisor, err)
	}
	if rep.Error != "" {
		conn.Close()
		return nil, nil, fmt.Errorf("%s refused the %s stream: %s", p.Hypervisor, h.Stream, rep.Error)
	}
	return conn, r, nil
}

// Prepare asks the target to make ready for the migration.
func (p Peer) Prepare(ctx context.Context, req *PrepareRequest) (*PrepareResponse, error) {
	conn, r, err := p.dial(ctx, Header{Migration: p.Migration, Stream: StreamPrepare})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := writeLine(conn, req); err != nil {
		return nil, fmt.Errorf("send prepare request to %s: %w", p.Hypervisor, err)
	}
	var rep reply
	if err := readLine(r, maxHeader, &rep); err != nil {
		return nil, fmt.Errorf("prepare on %s: %w", p.Hypervisor, err)
	}
	if rep.Error != "" {
		return nil, fmt.Errorf("prepare on %s: %s", p.Hypervisor, rep.Error)
	}
	var resp PrepareResponse
	if err := readLine(r, maxPrepare, &resp); err != nil {
		return nil, fmt.Errorf("prepare on %s: %w", p.Hypervisor, err)
	}
	return &resp, nil
}

// Tunnel is the source side of one migration's streams: a unix socket for
// the source libvirtd's connection to the target libvirtd, and two ports
// on 127.0.0.1 in the source's namespace for QEMU's memory stream and
// disk copy, each carried to the same port at the target.
type Tunnel struct {
	// Socket is the unix socket (dconnuri qemu+unix:///system?socket=...).
	Socket string
	// MigratePort and DisksPort are the ports.
	MigratePort, DisksPort int

	peer      Peer
	listeners []net.Listener
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     map[net.Conn]bool
	closed    bool
}

// OpenTunnel listens on socket (which the source libvirtd must be able to
// reach) and on two free migration ports, and starts forwarding.
func OpenTunnel(ctx context.Context, p Peer, socket string) (*Tunnel, error) {
	t := &Tunnel{Socket: socket, peer: p, conns: map[net.Conn]bool{}}
	os.Remove(socket)
	ul, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("migration socket: %w", err)
	}
	t.listeners = append(t.listeners, ul)
	ports, err := t.listenPorts(2)
	if err != nil {
		t.Close()
		return nil, err
	}
	t.MigratePort, t.DisksPort = ports[0], ports[1]
	logger := klog.FromContext(ctx)
	t.serve(ctx, ul, Header{Migration: p.Migration, Stream: StreamLibvirt}, logger)
	for i, port := range ports {
		t.serve(ctx, t.listeners[1+i], Header{Migration: p.Migration, Stream: StreamTCP, Port: port}, logger)
	}
	return t, nil
}

// listenPorts listens on n free ports of the migration range on 127.0.0.1
// in the source's namespace.
func (t *Tunnel) listenPorts(n int) ([]int, error) {
	var ports []int
	start := rand.IntN(PortMax - PortMin + 1)
	for i := 0; i <= PortMax-PortMin && len(ports) < n; i++ {
		port := PortMin + (start+i)%(PortMax-PortMin+1)
		var l net.Listener
		err := network.InNetns(t.peer.Netns, func() error {
			var err error
			l, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			return err
		})
		if err != nil {
			continue
		}
		t.listeners = append(t.listeners, l)
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("no %d free ports in %d-%d", n, PortMin, PortMax)
	}
	return ports, nil
}

func (t *Tunnel) serve(ctx context.Context, l net.Listener, h Header, logger klog.Logger) {
	t.wg.Go(func() {
		for {
			local, err := l.Accept()
			if err != nil {
				return
			}
			if !t.track(local, true) {
				local.Close()
				return
			}
			go func() {
				defer t.track(local, false)
				remote, r, err := t.peer.dial(ctx, h)
				if err != nil {
					logger.Info("Migration stream failed", "stream", h.Stream, "port", h.Port, "err", err)
					local.Close()
					return
				}
				t.track(remote, true)
				defer t.track(remote, false)
				splice(remote, r, local, copyAll)
			}()
		}
	})
}

func (t *Tunnel) track(c net.Conn, add bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if add {
		if t.closed {
			c.Close()
			return false
		}
		t.conns[c] = true
		return true
	}
	delete(t.conns, c)
	return true
}

// Close stops listening and cuts every stream.
func (t *Tunnel) Close() error {
	t.mu.Lock()
	t.closed = true
	conns := make([]net.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	var errs []error
	for _, l := range t.listeners {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	t.wg.Wait()
	os.Remove(t.Socket)
	return errors.Join(errs...)
}
