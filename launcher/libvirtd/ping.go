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

package libvirtd

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// callTimeout bounds one readiness check: a libvirtd that accepted the
// connection but hangs must not hang its caller.
const callTimeout = 30 * time.Second

// Ping asks libvirtd's QEMU driver for QEMU's version: nil once the daemon
// serves and knows QEMU's capabilities, which on an empty cache it probes
// first (about 8 s), so that a domain start after a good Ping does not
// wait for that.
func (h Host) Ping(ctx context.Context) error {
	conn := golibvirt.NewWithDialer(deadlineDialer{ctx: ctx, socket: h.Socket()})
	if err := conn.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		return fmt.Errorf("connect to libvirtd of host %s at %s: %w", h.Name, h.Socket(), err)
	}
	defer conn.Disconnect()
	if _, err := conn.ConnectGetVersion(); err != nil {
		return fmt.Errorf("ask libvirtd of host %s for QEMU's version: %w", h.Name, err)
	}
	return nil
}

// PingVirtlogd reports whether the host's virtlogd accepts connections.
func (h Host) PingVirtlogd(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(h.Dir, "run", "virtlogd-sock"))
	if err != nil {
		return fmt.Errorf("virtlogd of host %s: %w", h.Name, err)
	}
	return conn.Close()
}

// deadlineDialer dials a UNIX socket with a deadline on the whole
// conversation, which go-libvirt's calls do not take.
type deadlineDialer struct {
	ctx    context.Context
	socket string
}

func (d deadlineDialer) Dial() (net.Conn, error) {
	var dialer net.Dialer
	conn, err := dialer.DialContext(d.ctx, "unix", d.socket)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(callTimeout)
	if dl, ok := d.ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := conn.SetDeadline(deadline); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}
