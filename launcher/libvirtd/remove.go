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
	"time"
)

// Remove ends the host: every process still in its network namespace (its
// daemons, the QEMU processes of its guests) is killed, then the mount
// namespace's pin is unmounted and the network namespace deleted. What is
// gone already is skipped. The files in Dir are kept (logs, disks): the
// caller removes them if it wants to.
func (h Host) Remove(ctx context.Context) error {
	var errs []error
	if h.Netns != "" {
		if err := killNetns(h.Netns, 30*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if h.Dir != "" {
		errs = append(errs, unmount(h.MountNamespace()), unmount(h.nsDir()))
	}
	if h.Netns != "" {
		errs = append(errs, deleteNetns(ctx, h.Netns))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove libvirt host %s: %w", h.Name, err)
	}
	return nil
}
