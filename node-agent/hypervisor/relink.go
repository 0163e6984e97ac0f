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
	"fmt"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// linkDownFor is how long ResetInterface keeps the link down: long enough
// for a guest that polls its carrier once a second to see it.
const linkDownFor = 2 * time.Second

// ResetInterface takes the running domain's interface with mac down and up
// again. A guest's network manager (systemd-networkd, NetworkManager, the
// test guest's init) asks DHCP again when the carrier comes back: that is
// how a guest that moved where its address is not valid learns its new one.
func (l *Libvirt) ResetInterface(ctx context.Context, uid, mac string) error {
	if err := l.setLink(uid, mac, "down"); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(linkDownFor):
	}
	return l.setLink(uid, mac, "up")
}

func (l *Libvirt) setLink(uid, mac, state string) error {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return err
	}
	x, err := c.DomainGetXMLDesc(dom, 0)
	if err != nil {
		return fmt.Errorf("read definition of domain %s: %w", uid, err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		return fmt.Errorf("parse definition of domain %s: %w", uid, err)
	}
	if d.Devices != nil {
		for _, nic := range d.Devices.Interfaces {
			if nic.MAC == nil || !strings.EqualFold(nic.MAC.Address, mac) {
				continue
			}
			nic.Link = &libvirtxml.DomainInterfaceLink{State: state}
			nx, err := nic.Marshal()
			if err != nil {
				return fmt.Errorf("interface %s of domain %s: %w", mac, uid, err)
			}
			if err := c.DomainUpdateDeviceFlags(dom, nx, golibvirt.DomainDeviceModifyLive); err != nil {
				return fmt.Errorf("set link %s of interface %s of domain %s: %w", state, mac, uid, err)
			}
			return nil
		}
	}
	return fmt.Errorf("domain %s has no interface %s", uid, mac)
}
