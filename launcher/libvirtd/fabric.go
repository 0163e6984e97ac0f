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
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Fabric is the network between hosts: a bridge in a network namespace of
// its own, each host attached by a veth pair. It carries what goes from
// host to host (live migration) and never touches the machine's own
// network namespace.
type Fabric struct {
	// Netns names the fabric's network namespace.
	Netns string
	// Bridge names the bridge in it.
	Bridge string
}

// Ensure creates the fabric's namespace and bridge unless they exist.
func (f Fabric) Ensure(ctx context.Context) error {
	if err := ensureNetns(ctx, f.Netns); err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	if !linkExists(ctx, f.Netns, f.Bridge) {
		if _, err := run(ctx, "ip", "-n", f.Netns, "link", "add", f.Bridge, "type", "bridge"); err != nil {
			return fmt.Errorf("fabric: create bridge: %w", err)
		}
	}
	if _, err := run(ctx, "ip", "-n", f.Netns, "link", "set", f.Bridge, "up"); err != nil {
		return fmt.Errorf("fabric: bring up bridge: %w", err)
	}
	return nil
}

// Attach connects the host's network namespace to the fabric: a veth pair
// whose end in the fabric, named port, is a port of the bridge, and whose
// end in the host, FabricLink, has address. Created inside the two
// namespaces, the pair never appears in the machine's. An attachment that
// exists is kept and given the address.
func (f Fabric) Attach(ctx context.Context, h Host, port string, address netip.Prefix) error {
	if !linkExists(ctx, h.Netns, FabricLink) {
		// A port left over from an earlier pair of this name goes first.
		if linkExists(ctx, f.Netns, port) {
			if _, err := run(ctx, "ip", "-n", f.Netns, "link", "delete", port); err != nil {
				return fmt.Errorf("fabric: remove stale port %s: %w", port, err)
			}
		}
		if _, err := run(ctx, "ip", "-n", f.Netns, "link", "add", port, "type", "veth", "peer", "name", FabricLink, "netns", h.Netns); err != nil {
			return fmt.Errorf("fabric: connect host %s: %w", h.Name, err)
		}
	}
	steps := [][]string{
		{"ip", "-n", f.Netns, "link", "set", port, "master", f.Bridge, "up"},
		{"ip", "-n", h.Netns, "address", "replace", address.String(), "dev", FabricLink},
		{"ip", "-n", h.Netns, "link", "set", FabricLink, "up"},
	}
	for _, argv := range steps {
		if _, err := run(ctx, argv...); err != nil {
			return fmt.Errorf("fabric: connect host %s: %w", h.Name, err)
		}
	}
	return nil
}

// Remove deletes the fabric's namespace, its bridge and the hosts' ends of
// their pairs with it.
func (f Fabric) Remove(ctx context.Context) error {
	var errs []error
	if err := killNetns(f.Netns, 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, deleteNetns(ctx, f.Netns))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove the fabric: %w", err)
	}
	return nil
}

func linkExists(ctx context.Context, netns, link string) bool {
	out, err := run(ctx, "ip", "-n", netns, "-o", "link", "show", "dev", link)
	return err == nil && strings.Contains(out, link)
}
