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

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// collectOrphans removes this node's domains whose VM no longer exists (it
// was deleted while the agent was away, or its finalizer was removed by
// hand). Domains of other hypervisor names and foreign domains are left
// alone.
func (a *Agent) collectOrphans(ctx context.Context) error {
	if !a.synced() {
		return nil
	}
	doms, err := a.hv.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, dom := range doms {
		if dom.Owner.Hypervisor != a.cfg.HypervisorName {
			continue
		}
		if objs, _ := a.indexer.ByIndex(uidIndex, dom.UUID); len(objs) > 0 {
			continue
		}
		// The informer may lag: ask the API before deleting anything.
		vm, err := a.client.VesselV1alpha1().VirtualMachines(dom.Owner.Namespace).Get(ctx, dom.Owner.Name, metav1.GetOptions{})
		switch {
		case err == nil && string(vm.UID) == dom.UUID:
			continue
		case err != nil && !apierrors.IsNotFound(err):
			errs = append(errs, err)
			continue
		}
		klog.FromContext(ctx).Info("Removing orphaned domain", "domain", dom.Name, "uid", dom.UUID, "vm", dom.Owner.Key())
		if err := a.hv.Destroy(ctx, dom.UUID); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := a.hv.Undefine(ctx, dom.UUID); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.RemoveAll(a.vmDir(dom.UUID)); err != nil {
			errs = append(errs, fmt.Errorf("remove VM directory: %w", err))
		}
	}
	return errors.Join(errs...)
}
