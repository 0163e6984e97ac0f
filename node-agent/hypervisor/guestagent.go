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
	"fmt"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// GuestAgentChannel is the name of the virtio-serial port every domain has
// for the QEMU guest agent (qemu-ga listens on it in the guest).
const GuestAgentChannel = "org.qemu.guest_agent.0"

// ErrAgentNotConnected says the guest has no QEMU guest agent answering on
// GuestAgentChannel right now (none installed, not started yet, or hung).
var ErrAgentNotConnected = errors.New("the QEMU guest agent is not connected")

// GuestAgent talks to the QEMU guest agent in a running guest. libvirt
// bounds every call by its agent timeout (5 s by default) and fails at once
// when the channel is not connected, so no call blocks for long. Keyed by
// the domain UUID; domains Vessel does not own are refused.
type GuestAgent interface {
	// GuestInfo asks the agent about the guest's operating system, host
	// name and network interfaces.
	GuestInfo(ctx context.Context, uid string) (*GuestInfo, error)
	// FreezeFilesystems freezes the guest's mounted filesystems (their
	// writes are flushed and held) and returns how many were frozen.
	FreezeFilesystems(ctx context.Context, uid string) (int, error)
	// ThawFilesystems undoes FreezeFilesystems; thawing a guest that is not
	// frozen succeeds with 0.
	ThawFilesystems(ctx context.Context, uid string) (int, error)
	// RebootGuest asks the guest's operating system to reboot through the
	// agent: QEMU and the domain keep running.
	RebootGuest(ctx context.Context, uid string) error
}

var _ GuestAgent = &Libvirt{}

// GuestInfo is what the guest agent reports about the guest.
type GuestInfo struct {
	OS         GuestOS
	Hostname   string
	Interfaces []GuestInterface
}

// GuestOS is the guest's operating system (guest-get-osinfo).
type GuestOS struct {
	Name, PrettyName, ID, Version, VersionID string
	KernelRelease, KernelVersion, Machine    string
}

// GuestInterface is one network interface as the guest sees it.
type GuestInterface struct {
	Name string
	MAC  string
	// Addresses are "address/prefix" strings, IPv4 and IPv6.
	Addresses []GuestAddress
}

// GuestAddress is one address of a guest interface.
type GuestAddress struct {
	IP     string
	Prefix uint32
	IPv6   bool
}

// agentErr maps libvirt's "no agent" answers to ErrAgentNotConnected,
// keeping libvirt's words, and wraps everything else with what was done.
func agentErr(err error, what, uid string) error {
	if isCode(err, golibvirt.ErrAgentUnresponsive) || isCode(err, golibvirt.ErrAgentUnsynced) || isCode(err, golibvirt.ErrArgumentUnsupported) {
		return fmt.Errorf("%w: %v", ErrAgentNotConnected, err)
	}
	if isCode(err, golibvirt.ErrOperationInvalid) {
		// Not running: no agent to talk to.
		return fmt.Errorf("%w: %v", ErrAgentNotConnected, err)
	}
	if golibvirt.IsNotFound(err) {
		return ErrNotFound
	}
	return fmt.Errorf("%s of domain %s: %w", what, uid, err)
}

// GuestInfo implements GuestAgent.
func (l *Libvirt) GuestInfo(ctx context.Context, uid string) (*GuestInfo, error) {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return nil, err
	}
	params, err := c.DomainGetGuestInfo(dom, uint32(golibvirt.DomainGuestInfoOs|golibvirt.DomainGuestInfoHostname), 0)
	if err != nil {
		return nil, agentErr(err, "ask the guest agent", uid)
	}
	info := parseGuestInfo(params)
	ifaces, err := c.DomainInterfaceAddresses(dom, uint32(golibvirt.DomainInterfaceAddressesSrcAgent), 0)
	if err != nil {
		return nil, agentErr(err, "ask the guest agent for interfaces", uid)
	}
	info.Interfaces = guestInterfaces(ifaces)
	return info, nil
}

// parseGuestInfo reads virDomainGetGuestInfo's typed parameters.
func parseGuestInfo(params []golibvirt.TypedParam) *GuestInfo {
	info := &GuestInfo{}
	for _, p := range params {
		s, ok := p.Value.I.(string)
		if !ok {
			continue
		}
		switch p.Field {
		case golibvirt.DomainGuestInfoOsName:
			info.OS.Name = s
		case golibvirt.DomainGuestInfoOsPrettyName:
			info.OS.PrettyName = s
		case golibvirt.DomainGuestInfoOsID:
			info.OS.ID = s
		case golibvirt.DomainGuestInfoOsVersion:
			info.OS.Version = s
		case golibvirt.DomainGuestInfoOsVersionID:
			info.OS.VersionID = s
		case "os.kernel-release":
			info.OS.KernelRelease = s
		case "os.kernel-version":
			info.OS.KernelVersion = s
		case "os.machine":
			info.OS.Machine = s
		case "hostname":
			info.Hostname = s
		}
	}
	return info
}

// guestInterfaces converts virDomainInterfaceAddresses' answer, without
// the loopback interface.
func guestInterfaces(in []golibvirt.DomainInterface) []GuestInterface {
	var out []GuestInterface
	for _, i := range in {
		if i.Name == "lo" {
			continue
		}
		gi := GuestInterface{Name: i.Name}
		if len(i.Hwaddr) > 0 {
			gi.MAC = i.Hwaddr[0]
		}
		for _, a := range i.Addrs {
			gi.Addresses = append(gi.Addresses, GuestAddress{IP: a.Addr, Prefix: a.Prefix, IPv6: a.Type == int32(golibvirt.IPAddrTypeIpv6)})
		}
		out = append(out, gi)
	}
	return out
}

// FreezeFilesystems implements GuestAgent.
func (l *Libvirt) FreezeFilesystems(ctx context.Context, uid string) (int, error) {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return 0, err
	}
	n, err := c.DomainFsfreeze(dom, nil, 0)
	if err != nil {
		return 0, agentErr(err, "freeze the filesystems", uid)
	}
	return int(n), nil
}

// ThawFilesystems implements GuestAgent.
func (l *Libvirt) ThawFilesystems(ctx context.Context, uid string) (int, error) {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return 0, err
	}
	n, err := c.DomainFsthaw(dom, nil, 0)
	if err != nil {
		return 0, agentErr(err, "thaw the filesystems", uid)
	}
	return int(n), nil
}

// RebootGuest implements GuestAgent.
func (l *Libvirt) RebootGuest(ctx context.Context, uid string) error {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return err
	}
	if err := c.DomainReboot(dom, golibvirt.DomainRebootGuestAgent); err != nil {
		return agentErr(err, "reboot the guest through its agent", uid)
	}
	return nil
}
