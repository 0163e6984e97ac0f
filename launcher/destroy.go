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

package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Destroy ends the control plane of stateDir for good: it stops the
// processes (Down), then removes every hypervisor the state directory ever
// ran: whatever still runs in its network namespace (its guests' QEMU and
// virtlogd) is killed, and its namespaces are removed, the fabric's too.
// The state directory's files are kept; it can be removed afterwards.
func Destroy(stateDir string) error {
	l, err := newLayout(stateDir)
	if err != nil {
		return err
	}
	errs := []error{Down(l.root)}
	plan, err := loadPlan(l)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, hv := range plan.Hypervisors {
		if err := hv.LibvirtHost().Remove(ctx); err != nil {
			errs = append(errs, err)
		}
		for _, name := range hypervisorComponentNames(hv.Name) {
			if err := os.Remove(l.pidFile(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if plan.FabricNetns != "" {
		errs = append(errs, plan.fabric().Remove(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroy the control plane in %s: %w", l.root, err)
	}
	return nil
}
