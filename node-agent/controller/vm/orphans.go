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

package vm

import (
	"context"
	"errors"
	"fmt"
	"os"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// collectOrphans removes this agent's domains whose VM no longer exists (it
// was deleted while the agent was away, or its finalizer was removed by
// hand). A domain is this agent's only when it is stamped with the UID of
// the Hypervisor object the agent registered: another control plane's
// agent may use the same hypervisor name on the same libvirtd, and its
// VMs are not in this API. Domains without the stamp (made by older
// agents), of another Hypervisor, or not Vessel's are never touched.
func (c *Controller) collectOrphans(ctx context.Context) error {
	if !c.synced() {
		return nil
	}
	self := c.identity.HypervisorUID()
	if self == "" {
		return nil
	}
	doms, err := c.hv.List(ctx)
	if err != nil {
		return err
	}
	logger := klog.FromContext(ctx)
	var errs []error
	for _, dom := range doms {
		if !c.claims(ctx, dom, self) {
			continue
		}
		if objs, _ := c.indexer.ByIndex(uidIndex, dom.UUID); len(objs) > 0 {
			continue
		}
		if c.incoming != nil && c.incoming(dom.UUID) {
			continue
		}
		// The informer may lag: ask the API before deleting anything.
		vm, err := c.client.VesselV1alpha1().VirtualMachines(dom.Owner.Namespace).Get(ctx, dom.Owner.Name, metav1.GetOptions{})
		switch {
		case err == nil && string(vm.UID) == dom.UUID:
			continue
		case err != nil && !apierrors.IsNotFound(err):
			errs = append(errs, err)
			continue
		}
		logger.Info("Removing orphaned domain", "domain", dom.Name, "uid", dom.UUID, "vm", dom.Owner.Key())
		if err := c.hv.Destroy(ctx, dom.UUID); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := c.hv.Undefine(ctx, dom.UUID); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.RemoveAll(c.vmDir(dom.UUID)); err != nil {
			errs = append(errs, fmt.Errorf("remove VM directory: %w", err))
		}
		if c.network != nil {
			errs = append(errs, c.network.Release(ctx, dom.UUID))
		}
	}
	return errors.Join(errs...)
}

// claims says orphan collection may consider dom: it carries this agent's
// Hypervisor UID. A domain with this agent's hypervisor name but another
// or no UID is logged once and left alone.
func (c *Controller) claims(ctx context.Context, dom hypervisor.Domain, self string) bool {
	if dom.Owner.HypervisorUID == self {
		return true
	}
	if dom.Owner.Hypervisor != c.cfg.Node {
		return false
	}
	c.mu.Lock()
	seen := c.unclaimed[dom.UUID]
	c.unclaimed[dom.UUID] = true
	c.mu.Unlock()
	if !seen {
		why := "it was made by another control plane's Hypervisor of the same name"
		if dom.Owner.HypervisorUID == "" {
			why = "it carries no Hypervisor UID (made by an older agent)"
		}
		klog.FromContext(ctx).V(2).Info("Leaving a domain with this hypervisor's name alone: "+why,
			"domain", dom.Name, "uid", dom.UUID, "hypervisorUID", dom.Owner.HypervisorUID)
	}
	return false
}
