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

package migration

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/disks"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/migrationproxy"
	"github.com/vessel-vm/vessel/node-agent/network"
)

// Server is the target end of the migration proxy for this agent.
func (c *Controller) Server(libvirtSocket string) *migrationproxy.Server {
	return &migrationproxy.Server{
		Creds:         c.creds,
		Authorize:     c.authorize,
		Prepare:       c.prepare,
		LibvirtSocket: libvirtSocket,
		Netns:         c.cfg.Netns,
	}
}

// authorize lets peer carry the streams of a Running migration from peer
// to this hypervisor, and nothing else.
func (c *Controller) authorize(peer, key string) error {
	m, err := c.incoming(key)
	if err != nil {
		return err
	}
	if m.Status.Source != peer {
		return fmt.Errorf("migration %s comes from %q, not from %q", key, m.Status.Source, peer)
	}
	return nil
}

// incoming is the Running migration key to this hypervisor, from the
// cache or, when the cache has not seen it Running yet, from the API.
func (c *Controller) incoming(key string) (*v1alpha1.VirtualMachineMigration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil || ns == "" || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return nil, fmt.Errorf("no migration %q", key)
	}
	ok := func(m *v1alpha1.VirtualMachineMigration) bool {
		return m.Status.Phase == v1alpha1.MigrationRunning && m.Status.Target == c.cfg.Node && m.DeletionTimestamp == nil
	}
	m, err := c.migrations.VirtualMachineMigrations(ns).Get(name)
	if err == nil && ok(m) {
		return m, nil
	}
	m, err = c.client.VesselV1alpha1().VirtualMachineMigrations(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("migration %s: %w", key, err)
	}
	if !ok(m) {
		return nil, fmt.Errorf("migration %s is not running to %s (phase %s, target %q)", key, c.cfg.Node, m.Status.Phase, m.Status.Target)
	}
	return m, nil
}

// prepare makes the VM directory with the files and empty disks the
// incoming domain uses, and the ports of its Managed interfaces.
func (c *Controller) prepare(ctx context.Context, key string, req *migrationproxy.PrepareRequest) (*migrationproxy.PrepareResponse, error) {
	m, err := c.incoming(key)
	if err != nil {
		return nil, err
	}
	if req.VMUID != m.Status.VirtualMachineUID || req.Namespace != m.Namespace {
		return nil, fmt.Errorf("migration %s moves VM %s, not %s/%s", key, m.Status.VirtualMachineUID, req.Namespace, req.VMUID)
	}
	if _, err := c.hv.Lookup(ctx, req.VMUID); !errors.Is(err, hypervisor.ErrNotFound) {
		return nil, fmt.Errorf("a domain with the VM's UUID exists here already (%v)", err)
	}
	dir := c.vmDir(req.VMUID)
	if err := disks.PrivateDir(dir); err != nil {
		return nil, fmt.Errorf("create VM directory: %w", err)
	}
	resp := &migrationproxy.PrepareResponse{Paths: map[string]string{}, NICs: map[string]migrationproxy.NICTarget{}, HypervisorUID: c.identity.HypervisorUID()}
	local := func(p string) (string, error) {
		base := filepath.Base(p)
		if base == "." || base == "/" || strings.HasPrefix(base, ".") {
			return "", fmt.Errorf("bad file name %q", p)
		}
		return filepath.Join(dir, base), nil
	}
	for _, f := range req.Files {
		to, err := local(f.Path)
		if err != nil {
			return nil, err
		}
		write := to
		if f.Log {
			write = filepath.Join(dir, migrationproxy.LogBeforeMigration(filepath.Base(to)))
		}
		if err := os.WriteFile(write, f.Data, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", write, err)
		}
		resp.Paths[f.Path] = to
	}
	for _, d := range req.Disks {
		to, err := local(d.Path)
		if err != nil {
			return nil, err
		}
		// A file from an earlier attempt holds a partial copy.
		os.Remove(to)
		if err := disks.Blank(ctx, to, d.VirtualSize); err != nil {
			return nil, fmt.Errorf("create disk %s: %w", to, err)
		}
		resp.Paths[d.Path] = to
	}
	var renumbered []string
	for _, nic := range req.NICs {
		if c.network == nil {
			return nil, fmt.Errorf("interface %s is Managed, but this hypervisor runs no managed network", nic.Name)
		}
		carried, _ := netip.ParseAddr(nic.IP)
		att, err := c.network.AttachCarried(ctx, req.Namespace, network.PortKey(req.VMUID, nic.Name), nic.MAC, carried)
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", nic.Name, err)
		}
		if carried.IsValid() && att.IP != carried {
			klog.FromContext(ctx).Info("The incoming guest's address is taken here or outside its namespace's network; it gets another", "migration", key, "interface", nic.Name, "was", carried, "now", att.IP)
			renumbered = append(renumbered, strings.ToLower(nic.MAC))
		}
		resp.NICs[strings.ToLower(nic.MAC)] = migrationproxy.NICTarget{Bridge: att.Bridge, Tap: att.Tap}
	}
	// Once the guest runs here, its interfaces whose address changed
	// are reset, so that it asks DHCP again (see relink).
	if len(renumbered) > 0 {
		if err := os.WriteFile(filepath.Join(dir, relinkFile), []byte(strings.Join(renumbered, "\n")), 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", relinkFile, err)
		}
	}
	klog.FromContext(ctx).Info("Prepared for an incoming guest", "migration", key, "from", m.Status.Source, "disks", len(req.Disks), "files", len(req.Files))
	return resp, nil
}

// relinkFile, in the VM directory of an incoming guest, lists the MACs of
// its interfaces whose address the target could not keep.
const relinkFile = "relink-interfaces"

// syncTarget removes the incoming guest of a migration that failed, and
// resets the interfaces of one that arrived whose address changed.
func (c *Controller) syncTarget(ctx context.Context, m *v1alpha1.VirtualMachineMigration) error {
	switch m.Status.Phase {
	case v1alpha1.MigrationFailed:
		return c.removeIncoming(ctx, m)
	case v1alpha1.MigrationSucceeded:
		return c.relink(ctx, m)
	}
	return nil
}

// relink resets the interfaces listed in the guest's relinkFile: it holds
// its source's lease for good, which is not valid here, and asks DHCP
// again when its link comes back (a guest that does not stays
// unreachable until it does; the event says so).
func (c *Controller) relink(ctx context.Context, m *v1alpha1.VirtualMachineMigration) error {
	uid := m.Status.VirtualMachineUID
	path := filepath.Join(c.vmDir(uid), relinkFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if dom, err := c.hv.Lookup(ctx, uid); err != nil || dom.State != hypervisor.StateRunning {
		return nil // nothing runs here to reset (any more)
	}
	macs := strings.Fields(string(data))
	for _, mac := range macs {
		if err := c.mig.ResetInterface(ctx, uid, mac); err != nil {
			return err
		}
	}
	if vm, err := c.vms.VirtualMachines(m.Namespace).Get(m.Spec.VirtualMachineName); err == nil && string(vm.UID) == uid {
		c.recorder.Eventf(vm, corev1.EventTypeNormal, "InterfacesReset",
			"Its address on %s was taken or outside the namespace's network there: interfaces %s were reset so that the guest asks DHCP for its new one", c.cfg.Node, strings.Join(macs, ", "))
	}
	klog.FromContext(ctx).Info("Reset the interfaces of an arrived guest whose address changed", "macs", macs)
	return os.Remove(path)
}

// removeIncoming removes the domain and files a migration to here left,
// unless the VM is bound here (another migration brought it) or another
// migration of it to here runs.
func (c *Controller) removeIncoming(ctx context.Context, m *v1alpha1.VirtualMachineMigration) error {
	uid := m.Status.VirtualMachineUID
	if uid == "" {
		return nil
	}
	vm, err := c.client.VesselV1alpha1().VirtualMachines(m.Namespace).Get(ctx, m.Spec.VirtualMachineName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return err
	case string(vm.UID) == uid && vm.Spec.NodeName == c.cfg.Node:
		return nil
	}
	others, err := c.migrations.VirtualMachineMigrations(m.Namespace).List(labelsEverything)
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.UID != m.UID && o.Status.VirtualMachineUID == uid && o.Status.Target == c.cfg.Node && o.Status.Phase == v1alpha1.MigrationRunning {
			return nil
		}
	}
	dom, err := c.hv.Lookup(ctx, uid)
	switch {
	case errors.Is(err, hypervisor.ErrNotFound):
	case err != nil:
		return err
	default:
		klog.FromContext(ctx).Info("Removing the incoming guest of a failed migration", "domain", dom.Name, "state", dom.State)
		if err := c.hv.Destroy(ctx, uid); err != nil {
			return err
		}
		if err := c.hv.Undefine(ctx, uid); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(c.vmDir(uid)); err != nil {
		return fmt.Errorf("remove VM directory: %w", err)
	}
	if c.network != nil {
		return c.network.Release(ctx, uid)
	}
	return nil
}
