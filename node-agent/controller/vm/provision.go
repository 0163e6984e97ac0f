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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/disks"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/network"
)

// retryProvisioningAfter is how long a transient provisioning failure (an
// unreachable image server, say) waits before the next attempt. Permanent
// failures (bad checksum, forbidden host path) wait for a spec change.
const retryProvisioningAfter = 15 * time.Second

// progressInterval throttles the status updates an image download causes.
const progressInterval = time.Second

// provisionRun is one attempt at preparing a VM's files. It runs in its own
// goroutine so a slow download never blocks a worker; it enqueues the VM
// when there is news. A pass reads it through snapshot().
type provisionRun struct {
	generation int64
	// hash is the machine spec being provisioned (machineSpecHash).
	hash   string
	cancel context.CancelFunc

	mu         sync.Mutex
	done       bool
	err        error
	permanent  bool
	reason     string
	disks      []v1alpha1.DiskStatus
	cfg        *hypervisor.DomainConfig
	finished   time.Time
	lastReport time.Time
}

func (p *provisionRun) state() provState {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := provState{InProgress: !p.done, Done: p.done && p.err == nil, Disks: append([]v1alpha1.DiskStatus(nil), p.disks...)}
	if p.done && p.err != nil {
		s.Reason = p.reason
		s.Message = truncate(p.err.Error(), 1024)
	}
	return s
}

// snapshot is the run as a pass observes it.
func (p *provisionRun) snapshot() *provObservation {
	state := p.state()
	p.mu.Lock()
	defer p.mu.Unlock()
	o := &provObservation{State: state, Generation: p.generation, Hash: p.hash, Permanent: p.permanent, Finished: p.finished}
	if state.Done {
		o.Config = p.cfg
	}
	return o
}

// provObservation is a provisioning run as one pass saw it.
type provObservation struct {
	State provState
	// Generation and Hash are the VM's generation and machineSpecHash the
	// run provisions.
	Generation int64
	Hash       string
	// Permanent says the failure waits for a spec change (bad checksum,
	// forbidden host path); others are retried.
	Permanent bool
	Finished  time.Time
	// Config is the domain config once provisioning succeeded.
	Config *hypervisor.DomainConfig
}

// stale says a new run should replace this one: the machine spec changed,
// or it failed and the spec changed since or a transient failure is due
// for another attempt.
func (p *provObservation) stale(generation int64, wantHash string, now time.Time) bool {
	if p.Hash != wantHash {
		return true
	}
	if p.State.InProgress || p.State.Reason == "" {
		return false
	}
	if generation != p.Generation {
		return true
	}
	return !p.Permanent && now.Sub(p.Finished) >= retryProvisioningAfter
}

func (p *provisionRun) setDisk(name string, phase v1alpha1.DiskPhase, progress, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.disks {
		if p.disks[i].Name == name {
			p.disks[i].Phase, p.disks[i].Progress, p.disks[i].Message = phase, progress, truncate(msg, 1024)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// startProvisioning launches a provisioning run for vm. It outlives the
// pass (under the controller's context, not the pass's).
func (c *Controller) startProvisioning(ctx context.Context, key string, vm *v1alpha1.VirtualMachine, st *vmState) {
	if st.prov != nil && st.prov.cancel != nil {
		st.prov.cancel()
	}
	pctx, cancel := context.WithCancel(c.runCtx)
	run := &provisionRun{generation: vm.Generation, hash: machineSpecHash(&vm.Spec), cancel: cancel}
	for _, d := range vm.Spec.Disks {
		run.disks = append(run.disks, v1alpha1.DiskStatus{Name: d.Name, Phase: v1alpha1.DiskPending})
	}
	st.prov = run
	vm = vm.DeepCopy()
	logger := klog.FromContext(ctx).WithValues("vm", key)
	go func() {
		defer cancel()
		cfg, err := c.provision(pctx, vm, run)
		run.mu.Lock()
		run.done, run.err, run.cfg, run.finished = true, err, cfg, c.clock.Now()
		if err != nil {
			run.reason, run.permanent = failureReason(err)
		}
		run.mu.Unlock()
		if err != nil {
			logger.Info("Provisioning failed", "reason", run.reason, "err", err)
		} else {
			logger.V(2).Info("Provisioned")
		}
		c.queue.Add(key)
	}()
}

// failureReason names a provisioning failure for the Provisioned condition.
func failureReason(err error) (reason string, permanent bool) {
	if reason, permanent := disks.Reason(err); reason != "" {
		return reason, permanent
	}
	if errors.Is(err, network.ErrBridgeNotAllowed) {
		return "BridgeNotAllowed", true
	}
	return "ProvisioningFailed", false
}

// provision prepares every file of vm's domain under its VM directory and
// returns the domain config. It is idempotent: existing overlays and blank
// disks are kept (they hold the guest's data).
func (c *Controller) provision(ctx context.Context, vm *v1alpha1.VirtualMachine, run *provisionRun) (*hypervisor.DomainConfig, error) {
	uid := string(vm.UID)
	dir := c.vmDir(uid)
	if !c.cfg.Simulated {
		if err := disks.PrivateDir(dir); err != nil {
			return nil, fmt.Errorf("create VM directory: %w", err)
		}
	}
	memory := vm.Spec.Memory
	if memory.IsZero() {
		memory = resource.MustParse(v1alpha1.DefaultMemory)
	}
	cfg := &hypervisor.DomainConfig{
		Owner: hypervisor.Owner{
			Namespace: vm.Namespace, Name: vm.Name, UID: uid,
			Hypervisor: c.cfg.Node, HypervisorUID: c.identity.HypervisorUID(),
		},
		SpecHash:   run.hash,
		KVM:        c.cfg.KVM,
		CPUs:       uint(max(vm.Spec.CPUs, 1)),
		MemoryKiB:  uint64(memory.Value() / 1024),
		UEFI:       vm.Spec.Firmware == v1alpha1.FirmwareUEFI,
		ConsoleLog: filepath.Join(dir, "console.log"),
	}
	if k := vm.Spec.Kernel; k != nil && c.cfg.Simulated {
		cfg.Kernel, cfg.Cmdline = filepath.Join(dir, "kernel"), k.Cmdline
	} else if k != nil {
		path, err := c.file(ctx, vm.Namespace, k.Kernel)
		if err != nil {
			return nil, fmt.Errorf("kernel: %w", err)
		}
		cfg.Kernel, cfg.Cmdline = path, k.Cmdline
		if k.Initrd != nil {
			if cfg.Initrd, err = c.file(ctx, vm.Namespace, *k.Initrd); err != nil {
				return nil, fmt.Errorf("initrd: %w", err)
			}
		}
	}
	for _, d := range vm.Spec.Disks {
		dc, err := c.provisionDisk(ctx, vm, dir, d, run)
		if err != nil {
			run.setDisk(d.Name, v1alpha1.DiskFailed, "", err.Error())
			return nil, fmt.Errorf("disk %s: %w", d.Name, err)
		}
		run.setDisk(d.Name, v1alpha1.DiskReady, "", "")
		cfg.Disks = append(cfg.Disks, dc)
	}
	var nics []hypervisor.NICConfig
	if c.cfg.Simulated && c.network == nil {
		nics = simulatedNICs(vm)
	} else {
		var err error
		if nics, err = NICConfigs(ctx, c.network, vm); err != nil {
			return nil, err
		}
	}
	cfg.NICs = nics
	// Validate now, so a spec libvirt cannot take fails as provisioning.
	if _, err := hypervisor.DomainXML(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Controller) provisionDisk(ctx context.Context, vm *v1alpha1.VirtualMachine, dir string, d v1alpha1.Disk, run *provisionRun) (hypervisor.DiskConfig, error) {
	dc := hypervisor.DiskConfig{Name: d.Name, Bus: string(d.Bus), ReadOnly: d.ReadOnly}
	if c.cfg.Simulated {
		dc.Path, dc.Format, dc.CDROM = filepath.Join(dir, "disk-"+d.Name+".qcow2"), "qcow2", d.CloudInit != nil
		return dc, nil
	}
	switch {
	case d.Image != nil:
		format := disks.Format(d.Image.Format)
		base, err := c.images.FetchImage(ctx, d.Image.URL, d.Image.SHA256, format, func(done, total int64) {
			c.reportProgress(vm, run, d.Name, done, total)
		})
		if err != nil {
			return dc, err
		}
		dc.Path, dc.Format = filepath.Join(dir, "disk-"+d.Name+".qcow2"), string(disks.QCOW2)
		dc.BackingPath, dc.BackingFormat = base, string(format)
		if err := disks.Overlay(ctx, base, format, dc.Path); err != nil {
			return dc, err
		}
	case d.HostPath != nil:
		format := disks.Format(d.HostPath.Format)
		path, err := c.hostPaths().Disk(ctx, d.HostPath.Path, vm.Namespace, format, !d.ReadOnly)
		if err != nil {
			return dc, err
		}
		dc.Path, dc.Format = path, string(format)
	case d.Blank != nil:
		dc.Path, dc.Format = filepath.Join(dir, "disk-"+d.Name+".qcow2"), "qcow2"
		if err := disks.Blank(ctx, dc.Path, d.Blank.Size.Value()); err != nil {
			return dc, err
		}
	case d.CloudInit != nil:
		dc.Path, dc.Format, dc.CDROM = filepath.Join(dir, "seed-"+d.Name+".iso"), "raw", true
		userData := d.CloudInit.UserData
		if ref := d.CloudInit.UserDataSecretRef; ref != nil {
			var err error
			if userData, err = c.userDataFromSecret(ctx, vm, ref.Name); err != nil {
				return dc, err
			}
		}
		err := disks.Seed(ctx, dc.Path, disks.SeedConfig{
			InstanceID:    string(vm.UID),
			LocalHostname: vm.Name,
			UserData:      userData,
			NetworkData:   d.CloudInit.NetworkData,
		})
		if err != nil {
			return dc, err
		}
	default:
		return dc, fmt.Errorf("no source")
	}
	return dc, nil
}

// reportProgress records an image download's progress and enqueues the VM,
// at most once per progressInterval.
func (c *Controller) reportProgress(vm *v1alpha1.VirtualMachine, run *provisionRun, disk string, done, total int64) {
	progress := fmt.Sprintf("%d bytes", done)
	if total > 0 {
		progress = fmt.Sprintf("%d%%", done*100/total)
	}
	run.setDisk(disk, v1alpha1.DiskImporting, progress, "")
	run.mu.Lock()
	now := c.clock.Now()
	due := now.Sub(run.lastReport) >= progressInterval
	if due {
		run.lastReport = now
	}
	run.mu.Unlock()
	if due {
		c.queue.Add(vm.Namespace + "/" + vm.Name)
	}
}

// file resolves a kernel or initrd source to a file on this host. QEMU
// only reads it, so it may lie under a shared root.
func (c *Controller) file(ctx context.Context, namespace string, src v1alpha1.FileSource) (string, error) {
	switch {
	case src.Image != nil:
		return c.images.Fetch(ctx, src.Image.URL, src.Image.SHA256, nil)
	case src.HostPath != nil:
		return c.hostPaths().Confine(src.HostPath.Path, namespace, false)
	}
	return "", fmt.Errorf("no source")
}

// hostPaths are the host directories VMs' hostPath sources may name.
func (c *Controller) hostPaths() disks.HostPaths {
	return disks.HostPaths{Shared: c.cfg.AllowedHostPathRoots, Writable: c.cfg.WritableHostPathRoots, MaxVirtualSize: c.cfg.MaxDiskVirtualSize}
}

// MachineSpecHash is machineSpecHash for the controllers that define a VM's
// domain themselves (clones): the VM controller compares it with the
// domain's stamp.
func MachineSpecHash(spec *v1alpha1.VirtualMachineSpec) string { return machineSpecHash(spec) }

// machineSpecHash identifies the parts of a spec that shape the domain
// (hardware, boot, disks, NICs), not its power state or placement. It is
// stamped into the domain so a spec edited since can be noticed and
// applied at the next boot.
func machineSpecHash(spec *v1alpha1.VirtualMachineSpec) string {
	m := spec.DeepCopy()
	m.RunStrategy, m.Paused, m.PowerAction = "", false, nil
	m.NodeName, m.NodeSelector, m.TerminationGracePeriodSeconds = "", nil, nil
	b, err := json.Marshal(m)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// userDataFromSecret reads a VM's user data through its userdata
// subresource: the vessel-apiserver reads the Secret and answers only the
// agent of the VM's hypervisor, so agents need no access to Secrets.
func (c *Controller) userDataFromSecret(ctx context.Context, vm *v1alpha1.VirtualMachine, secret string) (string, error) {
	res := c.client.VesselV1alpha1().RESTClient().Get().
		Namespace(vm.Namespace).Resource("virtualmachines").Name(vm.Name).SubResource("userdata").
		Do(ctx)
	// Error, unlike DoRaw, turns the server's Status into the error, so
	// the VM's status says what is missing.
	if err := res.Error(); err != nil {
		return "", fmt.Errorf("user data from Secret %s: %w", secret, err)
	}
	body, err := res.Raw()
	if err != nil {
		return "", fmt.Errorf("user data from Secret %s: %w", secret, err)
	}
	return string(body), nil
}
