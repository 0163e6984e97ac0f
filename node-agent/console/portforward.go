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

package console

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/portforward"
)

// GuestDialer connects to a guest's TCP port on the managed network.
type GuestDialer interface {
	DialGuest(ctx context.Context, uid string, port int32) (net.Conn, error)
}

// portForwardIdleTimeout ends a forwarding session nobody used for this
// long, as the kubelet's streaming server does.
const portForwardIdleTimeout = 4 * time.Hour

// servePortForward speaks the pods/portforward protocols (SPDY
// portforward.k8s.io, WebSocket v4.channel.k8s.io with ports in the query)
// for the VM's guest, after checking the domain is the VM's.
func (s *Server) servePortForward(w http.ResponseWriter, r *http.Request) {
	ref, err := parseRef(r)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	if s.cfg.PortForward == nil {
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "this agent runs no managed network to forward ports to")
		return
	}
	if _, code, err := s.domain(r.Context(), ref); err != nil {
		writeStatus(w, code, http.StatusText(code), err.Error())
		return
	}
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	portforward.ServePortForward(w, r, guestForwarder{s.cfg.PortForward, ref}, ref.name, ref.uid, opts,
		portForwardIdleTimeout, 30*time.Second, portforward.SupportedProtocols)
}

type guestForwarder struct {
	dialer GuestDialer
	ref    vmRef
}

// PortForward copies between one forwarded connection and a new TCP
// connection to the guest.
func (g guestForwarder) PortForward(ctx context.Context, _ string, uid string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	conn, err := g.dialer.DialGuest(ctx, uid, port)
	if err != nil {
		return fmt.Errorf("connect to port %d of VM %s: %w", port, g.ref, err)
	}
	defer conn.Close()
	// The client's end of input is passed on as a half close: the guest
	// may still answer (an HTTP/1.0 server, ssh's last words). The
	// forwarding ends when the guest is done sending.
	go func() {
		_, _ = io.Copy(conn, stream)
		if c, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = c.CloseWrite()
		}
	}()
	answered := make(chan struct{})
	go func() {
		_, _ = io.Copy(stream, conn)
		close(answered)
	}()
	select {
	case <-answered:
	case <-ctx.Done():
	}
	return nil
}
