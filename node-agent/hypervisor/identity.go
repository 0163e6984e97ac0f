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
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// A guest resumed from another guest's memory does not boot, so nothing in
// it would notice it is a new machine. Vessel tells it on the identity
// port: a virtio-serial port named IdentityPortName that the agent plugs
// into the running clone, writes one line on, reads the guest's answer
// from, and unplugs again. The guest sees the port appear (a kernel
// uevent, so a guest-side handler waits without polling), reads
//
//	VESSEL-IDENTITY v1 instance-id=<uid> hostname=<name> genid=<uuid> seed=<hex> mac0=<mac> ...
//
// applies what it can and answers `VESSEL-IDENTITY-ACK <instance-id>`. The
// test guest's handler is hack/guest/vessel-identity. The port is only
// plugged in for this: a memory image never contains it, and a guest that
// ignores it loses nothing.
const (
	// IdentityPortName is the virtio-serial port name the guest sees
	// (/sys/class/virtio-ports/*/name).
	IdentityPortName = "dev.vessel.identity.0"
	identityAlias    = "ua-vessel-identity"
	identityVersion  = "VESSEL-IDENTITY v1"
	identityAck      = "VESSEL-IDENTITY-ACK"
)

// GuestIdentity is what makes a clone a machine of its own, as its guest
// is told.
type GuestIdentity struct {
	// InstanceID is the VM's UID, also the cloud-init instance ID of its
	// seed.
	InstanceID string
	// Hostname is the VM's name.
	Hostname string
	// GenID is the domain's VM generation ID; SendIdentity reads it from
	// the running domain when empty.
	GenID string
	// MACs are the interfaces' new MAC addresses, in the domain's order.
	MACs []string
	// Seed is randomness for the guest's RNG: the clone's pool starts as
	// a copy of its source's.
	Seed []byte
}

// Line is the message on the identity port.
func (g GuestIdentity) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s instance-id=%s hostname=%s genid=%s seed=%s", identityVersion,
		token(g.InstanceID), token(g.Hostname), token(g.GenID), hex.EncodeToString(g.Seed))
	for i, mac := range g.MACs {
		fmt.Fprintf(&b, " mac%d=%s", i, token(mac))
	}
	return b.String() + "\n"
}

// token keeps a value one word of the line (names, UIDs and MACs are).
func token(s string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == '=' || r > '~' {
			return '_'
		}
		return r
	}, s)
}

// identitySocketDir holds the host side of identity ports: UNIX socket
// paths are short (108 bytes), state directories may not be.
var identitySocketDir = os.TempDir()

// SendIdentity implements Cloner.
func (l *Libvirt) SendIdentity(ctx context.Context, uid string, id GuestIdentity) (bool, error) {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return false, err
	}
	if id.GenID == "" {
		id.GenID = genID(c, dom)
	}
	sock := filepath.Join(identitySocketDir, "vessel-identity-"+uid+".sock")
	port := libvirtxml.DomainChannel{
		Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind", Path: sock}},
		Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: IdentityPortName}},
		Alias:  &libvirtxml.DomainAlias{Name: identityAlias},
	}
	x, err := port.Marshal()
	if err != nil {
		return false, err
	}
	// A port left behind by an agent that died mid-way goes first.
	_ = c.DomainDetachDeviceFlags(dom, x, uint32(golibvirt.DomainDeviceModifyLive))
	_ = os.Remove(sock)
	if err := c.DomainAttachDeviceFlags(dom, x, uint32(golibvirt.DomainDeviceModifyLive)); err != nil {
		return false, fmt.Errorf("plug the identity port into domain %s: %w", uid, err)
	}
	defer func() {
		_ = c.DomainDetachDeviceFlags(dom, x, uint32(golibvirt.DomainDeviceModifyLive))
		_ = os.Remove(sock)
	}()
	return exchangeIdentity(ctx, sock, id)
}

// exchangeIdentity writes the identity line on the port's host socket and
// waits for the guest's acknowledgement until ctx ends.
func exchangeIdentity(ctx context.Context, sock string, id GuestIdentity) (bool, error) {
	var d net.Dialer
	var conn net.Conn
	var err error
	for {
		if conn, err = d.DialContext(ctx, "unix", sock); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("connect to identity port %s: %w", sock, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if _, err := conn.Write([]byte(id.Line())); err != nil {
		return false, fmt.Errorf("write identity: %w", err)
	}
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if strings.TrimSpace(line) == identityAck+" "+token(id.InstanceID) {
			return true, nil
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false, nil // the guest did not answer: it has no handler
			}
			return false, nil
		}
	}
}

// genID is the running domain's VM generation ID, "" when unknown.
func genID(c *golibvirt.Libvirt, dom golibvirt.Domain) string {
	x, err := c.DomainGetXMLDesc(dom, 0)
	if err != nil {
		return ""
	}
	var d libvirtxml.Domain
	if d.Unmarshal(x) != nil || d.GenID == nil {
		return ""
	}
	return d.GenID.Value
}
