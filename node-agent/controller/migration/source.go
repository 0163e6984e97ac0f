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
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	"libvirt.org/go/libvirtxml"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/boundvm"
	vmcontroller "github.com/vessel-vm/vessel/node-agent/controller/vm"
	"github.com/vessel-vm/vessel/node-agent/disks"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/migrationproxy"
)

var labelsEverything = labels.Everything()

// progressInterval is how often a running migration's status is updated.
const progressInterval = time.Second

// markerName is the file in the VM directory that says this agent handed
// the guest to libvirt for migration m.
func markerName(m *v1alpha1.VirtualMachineMigration) string { return "migrating-" + string(m.UID) }

func (c *Controller) syncSource(ctx context.Context, m *v1alpha1.VirtualMachineMigration) (time.Duration, error) {
	key := m.Namespace + "/" + m.Name
	uid := m.Status.VirtualMachineUID
	switch m.Status.Phase {
	case v1alpha1.MigrationSucceeded:
		// The guest runs on the target: what is left here goes (again,
		// after a crash between the report and the cleanup).
		return 0, c.removeLeftSource(ctx, uid)
	case v1alpha1.MigrationFailed:
		os.Remove(filepath.Join(c.vmDir(uid), markerName(m)))
		return 0, nil
	case v1alpha1.MigrationRunning:
	default:
		return 0, nil
	}
	c.mu.Lock()
	_, busy := c.running[key]
	c.mu.Unlock()
	if busy || m.DeletionTimestamp != nil {
		return 0, nil
	}
	vm, err := c.vms.VirtualMachines(m.Namespace).Get(m.Spec.VirtualMachineName)
	if err != nil || string(vm.UID) != uid {
		return 0, c.fail(ctx, m, "the VM is no longer bound to the source hypervisor")
	}
	if m.Status.AcceptedTime == nil {
		accepted, err := c.accept(ctx, m)
		if err != nil {
			return 0, err
		}
		m = accepted
	}
	if _, err := os.Stat(filepath.Join(c.vmDir(uid), markerName(m))); err == nil {
		return c.recoverSource(ctx, m, vm)
	}
	release, ok := c.locks.TryLock(boundvm.Key(vm))
	if !ok {
		return boundvm.BusyRetry, nil
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.mu.Lock()
	c.running[key] = &run{uid: uid, cancel: cancel}
	c.mu.Unlock()
	go func() {
		defer func() {
			cancel()
			c.mu.Lock()
			delete(c.running, key)
			c.mu.Unlock()
			release()
			c.vmChanged(boundvm.Key(vm))
		}()
		c.send(rctx, m, vm)
	}()
	return 0, nil
}

// accept takes m on before this agent touches the guest: one write with
// the resourceVersion m was read at, so that it and the migration
// controller failing m for want of an answer never both succeed. A
// conflict leaves m to the next sync, from the version that won.
func (c *Controller) accept(ctx context.Context, m *v1alpha1.VirtualMachineMigration) (*v1alpha1.VirtualMachineMigration, error) {
	cur := m.DeepCopy()
	now := metav1.NewTime(c.clock.Now())
	cur.Status.AcceptedTime = &now
	accepted, err := c.client.VesselV1alpha1().VirtualMachineMigrations(m.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("take migration %s/%s on: %w", m.Namespace, m.Name, err)
	}
	return accepted, nil
}

// recoverSource decides a migration this agent handed to libvirt before it
// restarted: the tunnel died with the old process, so libvirt has finished
// by now one way or the other (or is about to).
func (c *Controller) recoverSource(ctx context.Context, m *v1alpha1.VirtualMachineMigration, vm *v1alpha1.VirtualMachine) (time.Duration, error) {
	uid := m.Status.VirtualMachineUID
	moved, err := c.mig.MigratedAway(ctx, uid)
	switch {
	case errors.Is(err, hypervisor.ErrNotFound):
		moved = true
	case err != nil:
		return 0, err
	}
	if moved {
		stats, _ := c.mig.MigrationStats(ctx, uid, true)
		return 0, c.succeed(ctx, m, stats)
	}
	stats, err := c.mig.MigrationStats(ctx, uid, false)
	if err == nil && stats.Active {
		return progressInterval, nil
	}
	os.Remove(filepath.Join(c.vmDir(uid), markerName(m)))
	return 0, c.fail(ctx, m, "the source agent restarted while the guest was moving; the guest runs on the source")
}

// send moves the guest, holding the VM's lock, and reports the outcome.
func (c *Controller) send(ctx context.Context, m *v1alpha1.VirtualMachineMigration, vm *v1alpha1.VirtualMachine) {
	logger := klog.FromContext(ctx)
	uid := string(vm.UID)
	dom, err := c.hv.Lookup(ctx, uid)
	if err != nil || dom.State != hypervisor.StateRunning {
		c.report(ctx, m, c.fail(ctx, m, fmt.Sprintf("the guest is not running here (%v)", stateOf(dom, err))))
		return
	}
	c.setVMPhase(ctx, vm, v1alpha1.VirtualMachineMigrating)
	err = c.migrate(ctx, m, vm, dom)
	if err == nil {
		stats, serr := c.mig.MigrationStats(ctx, uid, true)
		if serr != nil {
			logger.Info("No statistics of the completed migration", "err", serr)
		}
		c.recorder.Eventf(vm, corev1.EventTypeNormal, "Migrated", "Guest moved from %s to %s (downtime %s)", m.Status.Source, m.Status.Target, stats.Downtime)
		c.report(ctx, m, c.succeed(ctx, m, stats))
		return
	}
	// libvirt may report an error after the guest moved (a lost
	// confirmation): the domain here says which.
	if moved, merr := c.mig.MigratedAway(ctx, uid); merr == nil && moved {
		stats, _ := c.mig.MigrationStats(ctx, uid, true)
		c.report(ctx, m, c.succeed(ctx, m, stats))
		return
	}
	os.Remove(filepath.Join(c.vmDir(uid), markerName(m)))
	logger.Info("Migration failed; the guest runs on here", "err", err)
	c.recorder.Eventf(vm, corev1.EventTypeWarning, "MigrationFailed", "Guest stays on %s: %v", m.Status.Source, err)
	c.report(ctx, m, c.fail(ctx, m, fmt.Sprintf("the guest stays on %s: moving it to %s failed: %v", m.Status.Source, m.Status.Target, err)))
}

func (c *Controller) report(ctx context.Context, m *v1alpha1.VirtualMachineMigration, err error) {
	if err != nil {
		klog.FromContext(ctx).Error(err, "Reporting migration")
		c.queue.AddAfter(m.Namespace+"/"+m.Name, progressInterval)
	}
}

func stateOf(dom *hypervisor.Domain, err error) string {
	if err != nil {
		return err.Error()
	}
	return string(dom.State)
}

// migrate prepares the target, opens the tunnel and runs libvirt's
// migration, reporting progress meanwhile.
func (c *Controller) migrate(ctx context.Context, m *v1alpha1.VirtualMachineMigration, vm *v1alpha1.VirtualMachine, dom *hypervisor.Domain) error {
	uid := string(vm.UID)
	target, err := c.client.VesselV1alpha1().Hypervisors().Get(ctx, m.Status.Target, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read target hypervisor %s: %w", m.Status.Target, err)
	}
	if target.Status.MigrationEndpoint == "" {
		return fmt.Errorf("target hypervisor %s publishes no migration endpoint", target.Name)
	}
	srcXML, err := c.mig.MigratableXML(ctx, uid)
	if err != nil {
		return err
	}
	req, err := c.prepareRequest(vm, srcXML)
	if err != nil {
		return err
	}
	peer := migrationproxy.Peer{
		Creds: c.creds, Hypervisor: target.Name, Endpoint: target.Status.MigrationEndpoint,
		Migration: m.Namespace + "/" + m.Name, Netns: c.cfg.Netns,
	}
	logger := klog.FromContext(ctx)
	logger.Info("Preparing the target", "target", target.Name, "endpoint", target.Status.MigrationEndpoint, "disks", len(req.Disks), "files", len(req.Files))
	resp, err := peer.Prepare(ctx, req)
	if err != nil {
		return err
	}
	destXML, err := hypervisor.MigrationDestXML(srcXML, hypervisor.MigrationTarget{
		Owner: hypervisor.Owner{
			Namespace: vm.Namespace, Name: vm.Name, UID: uid,
			Hypervisor: target.Name, HypervisorUID: resp.HypervisorUID,
		},
		SpecHash: dom.SpecHash,
		Paths:    resp.Paths,
		NICs:     nicTargets(resp.NICs),
	})
	if err != nil {
		return err
	}
	socket := filepath.Join(c.cfg.StateDir, "migrations", string(m.UID)[:8]+".sock")
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return fmt.Errorf("create migration socket directory: %w", err)
	}
	tunnel, err := migrationproxy.OpenTunnel(ctx, peer, socket)
	if err != nil {
		return err
	}
	defer tunnel.Close()
	if err := os.WriteFile(filepath.Join(c.vmDir(uid), markerName(m)), []byte(m.Status.Target+"\n"), 0o600); err != nil {
		return fmt.Errorf("write migration marker: %w", err)
	}
	pctx, stopProgress := context.WithCancel(ctx)
	defer stopProgress()
	go c.reportProgress(pctx, m, uid)
	logger.Info("Migrating", "target", target.Name, "socket", socket, "migratePort", tunnel.MigratePort, "disksPort", tunnel.DisksPort)
	return c.mig.Migrate(ctx, uid, hypervisor.Migration{
		DconnURI:      "qemu+unix:///system?socket=" + socket,
		MigrateURI:    fmt.Sprintf("tcp://127.0.0.1:%d", tunnel.MigratePort),
		DisksURI:      fmt.Sprintf("tcp://127.0.0.1:%d", tunnel.DisksPort),
		ListenAddress: "127.0.0.1",
		DestXML:       destXML,
		BandwidthMiBs: c.cfg.BandwidthMiBs,
	})
}

func nicTargets(in map[string]migrationproxy.NICTarget) map[string]hypervisor.NICConfig {
	out := map[string]hypervisor.NICConfig{}
	for mac, t := range in {
		out[strings.ToLower(mac)] = hypervisor.NICConfig{Bridge: t.Bridge, Target: t.Tap}
	}
	return out
}

// prepareRequest lists what the target makes ready: the writable disks the
// copy fills, the files of the VM directory and state directory the
// domain reads (seed images, kernels from the image cache), and the
// Managed interfaces.
func (c *Controller) prepareRequest(vm *v1alpha1.VirtualMachine, srcXML string) (*migrationproxy.PrepareRequest, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(srcXML); err != nil {
		return nil, fmt.Errorf("parse domain definition: %w", err)
	}
	req := &migrationproxy.PrepareRequest{VMUID: string(vm.UID), Namespace: vm.Namespace}
	own := func(p string) bool { return p != "" && strings.HasPrefix(p, c.cfg.StateDir+string(filepath.Separator)) }
	addFile := func(p string, log bool) error {
		if !own(p) {
			return nil // a shared path (hostPath root), the same on every hypervisor
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read %s for the target: %w", p, err)
		}
		req.Files = append(req.Files, migrationproxy.PrepareFile{Path: p, Data: data, Log: log})
		return nil
	}
	if d.OS != nil {
		for _, p := range []string{d.OS.Kernel, d.OS.Initrd} {
			if err := addFile(p, false); err != nil {
				return nil, err
			}
		}
	}
	if d.Devices != nil {
		for _, disk := range d.Devices.Disks {
			if disk.Source == nil || disk.Source.File == nil {
				continue
			}
			p := disk.Source.File.File
			if disk.ReadOnly != nil {
				if err := addFile(p, false); err != nil {
					return nil, err
				}
				continue
			}
			if !own(p) {
				return nil, fmt.Errorf("disk %s is not in the agent's state directory and cannot be copied", p)
			}
			size, err := disks.VirtualSize(p)
			if err != nil {
				return nil, fmt.Errorf("disk %s: %w", p, err)
			}
			req.Disks = append(req.Disks, migrationproxy.PrepareDisk{Path: p, VirtualSize: size})
		}
		for _, s := range d.Devices.Serials {
			if s.Log != nil && own(s.Log.File) {
				// The log goes on in a new file on the target; the
				// target keeps this one next to it.
				if err := addFile(s.Log.File, true); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, nic := range vm.Spec.Interfaces {
		if nic.Type == v1alpha1.InterfaceTypeManaged || nic.Type == "" {
			pn := migrationproxy.PrepareNIC{Name: nic.Name, MAC: vmcontroller.InterfaceMAC(string(vm.UID), nic.Name, nic.MACAddress)}
			if c.network != nil {
				if ips := c.network.Addresses(vm.Namespace, pn.MAC); len(ips) > 0 {
					pn.IP = ips[0].String()
				}
			}
			req.NICs = append(req.NICs, pn)
		}
	}
	return req, nil
}

// reportProgress writes the migration's progress until ctx ends.
func (c *Controller) reportProgress(ctx context.Context, m *v1alpha1.VirtualMachineMigration, uid string) {
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s, err := c.mig.MigrationStats(ctx, uid, false)
		if err != nil || !s.Active {
			continue
		}
		err = c.updateStatus(ctx, m, func(st *v1alpha1.VirtualMachineMigrationStatus) {
			if st.Phase != v1alpha1.MigrationRunning {
				return
			}
			// libvirt's first figures cover only part of the job (all of
			// it "processed"); a running migration is never at 100% and
			// its progress does not go back.
			prev := st.Progress
			setBytes(st, s)
			st.Progress = max(prev, min(st.Progress, 99))
			if s.DataProcessed >= s.DataTotal {
				st.Progress = prev
			}
		})
		if err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).V(2).Info("Progress not reported", "err", err)
		}
	}
}

func setBytes(st *v1alpha1.VirtualMachineMigrationStatus, s hypervisor.MigrationStats) {
	st.TransferredBytes, st.TotalBytes = int64(s.DataProcessed), int64(s.DataTotal)
	st.MemoryPagesTransferred = int64(s.MemoryNormalPages)
	if s.DataTotal > 0 {
		st.Progress = int32(min(100, s.DataProcessed*100/s.DataTotal))
	}
}

// succeed reports the guest runs on the target (the migration controller
// then binds the VM there) and removes what is left of it here.
func (c *Controller) succeed(ctx context.Context, m *v1alpha1.VirtualMachineMigration, s hypervisor.MigrationStats) error {
	now := metav1.NewTime(c.clock.Now())
	err := c.updateStatus(ctx, m, func(st *v1alpha1.VirtualMachineMigrationStatus) {
		st.Phase, st.EndTime, st.Reason = v1alpha1.MigrationSucceeded, &now, ""
		setBytes(st, s)
		st.Progress = 100
		st.Downtime = &metav1.Duration{Duration: s.Downtime}
		if st.StartTime != nil {
			st.Duration = &metav1.Duration{Duration: now.Sub(st.StartTime.Time).Round(time.Millisecond)}
		}
		if s.Elapsed > 0 {
			st.Duration = &metav1.Duration{Duration: s.Elapsed}
		}
	})
	if err != nil {
		return err
	}
	return c.removeLeftSource(ctx, m.Status.VirtualMachineUID)
}

// removeLeftSource removes the shut-off domain and the files a guest that
// moved away left here. An active domain is never touched.
func (c *Controller) removeLeftSource(ctx context.Context, uid string) error {
	dom, err := c.hv.Lookup(ctx, uid)
	switch {
	case errors.Is(err, hypervisor.ErrNotFound):
	case err != nil:
		return err
	case dom.State.Active():
		return nil
	default:
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

func (c *Controller) fail(ctx context.Context, m *v1alpha1.VirtualMachineMigration, reason string) error {
	now := metav1.NewTime(c.clock.Now())
	return c.updateStatus(ctx, m, func(st *v1alpha1.VirtualMachineMigrationStatus) {
		if st.Phase == v1alpha1.MigrationSucceeded || st.Phase == v1alpha1.MigrationFailed {
			return
		}
		st.Phase, st.EndTime, st.Reason = v1alpha1.MigrationFailed, &now, reason
	})
}

// setVMPhase shows the VM moving; the VM controller recomputes the phase
// once the migration ends.
func (c *Controller) setVMPhase(ctx context.Context, vm *v1alpha1.VirtualMachine, phase v1alpha1.VirtualMachinePhase) {
	cur := vm.DeepCopy()
	cur.Status.Phase = phase
	if _, err := c.client.VesselV1alpha1().VirtualMachines(vm.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
		klog.FromContext(ctx).V(2).Info("VM phase not updated", "phase", phase, "err", err)
	}
}
