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
	"io"
	"net"
	"strconv"
	"time"

	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/node-agent/network"
)

// handshakeTimeout bounds a connection's TLS handshake and header.
const handshakeTimeout = 10 * time.Second

// Server is the target side: it accepts the source agents' streams.
type Server struct {
	Creds Credentials
	// Authorize allows peer (a hypervisor name from its verified
	// certificate) to carry streams of migration (namespace/name).
	Authorize func(peer, migration string) error
	// Prepare makes the target ready for migration.
	Prepare func(ctx context.Context, migration string, req *PrepareRequest) (*PrepareResponse, error)
	// LibvirtSocket is the target libvirtd's socket.
	LibvirtSocket string
	// Netns is the hypervisor's network namespace, where QEMU listens.
	Netns string
}

// Listen opens the listener on address inside netns.
func Listen(netns, address string) (net.Listener, error) {
	var l net.Listener
	err := network.InNetns(netns, func() error {
		var err error
		l, err = net.Listen("tcp", address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("migration listener on %s: %w", address, err)
	}
	return l, nil
}

// Serve accepts connections on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	tl := tls.NewListener(l, s.Creds.serverTLS())
	go func() {
		<-ctx.Done()
		tl.Close()
	}()
	for {
		conn, err := tl.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept migration connection: %w", err)
		}
		go s.handle(ctx, conn.(*tls.Conn))
	}
}

func (s *Server) handle(ctx context.Context, conn *tls.Conn) {
	logger := klog.FromContext(ctx).WithValues("remote", conn.RemoteAddr().String())
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := conn.HandshakeContext(ctx); err != nil {
		logger.V(2).Info("Migration connection refused", "err", err)
		return
	}
	peer, err := s.Creds.peerHypervisor(conn)
	if err != nil {
		logger.Info("Migration connection refused", "err", err)
		return
	}
	r := bufio.NewReader(conn)
	var h Header
	if err := readLine(r, maxHeader, &h); err != nil {
		logger.Info("Migration connection without a header", "peer", peer, "err", err)
		return
	}
	refuse := func(err error) {
		logger.Info("Migration stream refused", "peer", peer, "migration", h.Migration, "stream", h.Stream, "err", err)
		writeLine(conn, reply{Error: err.Error()})
	}
	if err := s.Authorize(peer, h.Migration); err != nil {
		refuse(err)
		return
	}
	conn.SetDeadline(time.Time{})
	switch h.Stream {
	case StreamPrepare:
		if err := writeLine(conn, reply{}); err != nil {
			return
		}
		var req PrepareRequest
		if err := readLine(r, maxPrepare, &req); err != nil {
			refuse(fmt.Errorf("read prepare request: %w", err))
			return
		}
		resp, err := s.Prepare(ctx, h.Migration, &req)
		if err != nil {
			refuse(err)
			return
		}
		if err := writeLine(conn, reply{}); err == nil {
			writeLine(conn, resp)
		}
	case StreamLibvirt:
		local, err := net.Dial("unix", s.LibvirtSocket)
		if err != nil {
			refuse(fmt.Errorf("connect to libvirtd: %w", err))
			return
		}
		// Only the migration's calls reach libvirtd (see rpcfilter.go).
		s.pipe(conn, r, local, func(dst io.Writer, src io.Reader) error {
			err := copyMigrationCalls(dst, src)
			if errors.Is(err, errCallRefused) {
				logger.Info("Migration stream ended", "peer", peer, "migration", h.Migration, "err", err)
			}
			return err
		})
	case StreamTCP:
		if h.Port < PortMin || h.Port > PortMax {
			refuse(fmt.Errorf("port %d is outside the migration ports %d-%d", h.Port, PortMin, PortMax))
			return
		}
		var local net.Conn
		err := network.InNetns(s.Netns, func() error {
			var err error
			local, err = net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Port)), handshakeTimeout)
			return err
		})
		if err != nil {
			refuse(fmt.Errorf("connect to QEMU: %w", err))
			return
		}
		s.pipe(conn, r, local, copyAll)
	default:
		refuse(fmt.Errorf("unknown stream %q", h.Stream))
	}
}

func (s *Server) pipe(conn *tls.Conn, r *bufio.Reader, local net.Conn, inbound func(io.Writer, io.Reader) error) {
	if err := writeLine(conn, reply{}); err != nil {
		local.Close()
		return
	}
	splice(conn, r, local, inbound)
}

func copyAll(dst io.Writer, src io.Reader) error {
	_, err := io.Copy(dst, src)
	return err
}

// splice copies both ways (what comes from remote through inbound) until
// either direction ends, then closes both: neither libvirt's RPC nor
// QEMU's streams half-close, and a peer that died must end its streams
// on this side at once.
func splice(remote net.Conn, fromRemote io.Reader, local net.Conn, inbound func(io.Writer, io.Reader) error) {
	done := make(chan struct{}, 2)
	go func() {
		inbound(local, fromRemote)
		done <- struct{}{}
	}()
	go func() {
		io.Copy(remote, local)
		done <- struct{}{}
	}()
	<-done
	remote.Close()
	local.Close()
	<-done
}
