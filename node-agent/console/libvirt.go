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
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/google/uuid"

	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// Libvirt opens serial consoles through libvirtd. Each stream gets its own
// connection: go-libvirt delivers stream data from the connection's receive
// loop, so a console never delays the agent's other libvirt calls, and
// closing the connection is a sure way to end a stuck stream.
type Libvirt struct {
	// Socket is libvirtd's read-write socket; empty means the default.
	Socket string
}

var _ Backend = &Libvirt{}

// Open implements Backend. It takes the console over from a stale holder
// (an earlier agent, a forgotten `virsh console`): the agent is the one
// party meant to hold it.
func (l *Libvirt) Open(ctx context.Context, uid string, in io.Reader, out io.Writer) (<-chan error, error) {
	u, err := uuid.Parse(uid)
	if err != nil {
		return nil, fmt.Errorf("domain uuid %q: %w", uid, err)
	}
	socket := l.Socket
	if socket == "" {
		socket = hypervisor.DefaultSocket
	}
	conn := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(socket), dialers.WithLocalTimeout(5*time.Second)))
	if err := conn.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		return nil, fmt.Errorf("connect to libvirtd at %s: %w", socket, err)
	}
	var once sync.Once
	disconnect := func() { once.Do(func() { _ = conn.Disconnect() }) }
	dom, err := conn.DomainLookupByUUID(golibvirt.UUID(u))
	if err != nil {
		disconnect()
		if golibvirt.IsNotFound(err) {
			return nil, hypervisor.ErrNotFound
		}
		return nil, fmt.Errorf("look up domain %s: %w", uid, err)
	}
	done := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		err := conn.DomainOpenConsoleBidirectional(dom, nil, in, out, uint32(golibvirt.DomainConsoleForce))
		close(stop)
		disconnect()
		if err != nil {
			err = fmt.Errorf("console of domain %s: %w", uid, err)
		}
		done <- err
	}()
	go func() {
		select {
		case <-ctx.Done():
			disconnect()
		case <-stop:
		}
	}()
	return done, nil
}
