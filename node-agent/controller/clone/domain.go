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

package clone

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/vm"
	"github.com/vessel-vm/vessel/node-agent/disks"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// domainConfig returns the definition of the clone's domain, and a func
// that makes its disk files in its VM directory: the machine its source's
// image was captured from, with the clone's identity. A writable disk
// becomes a new qcow2 overlay on the image's frozen copy (the source's disk as it was, never
// written again: neither machine sees the other's writes); a read-only
// disk is shared; a cloud-init seed is made anew with the clone's instance
// ID and hostname, so cloud-init treats the clone as a new instance the
// next time it looks. MACs are the clone's own, as its status reports.
func (c *Controller) domainConfig(ctx context.Context, target *v1alpha1.VirtualMachine, img *hypervisor.CloneImage, specHash string) (*hypervisor.DomainConfig, func() error, error) {
	uid := string(target.UID)
	dir := filepath.Join(c.cfg.StateDir, "vms", uid)
	if err := disks.PrivateDir(dir); err != nil {
		return nil, nil, fmt.Errorf("create VM directory: %w", err)
	}
	memory := target.Spec.Memory
	if memory.IsZero() {
		memory = resource.MustParse(v1alpha1.DefaultMemory)
	}
	cfg := &hypervisor.DomainConfig{
		Owner: hypervisor.Owner{
			Namespace: target.Namespace, Name: target.Name, UID: uid,
			Hypervisor: c.cfg.Node, HypervisorUID: c.identity.HypervisorUID(),
		},
		SpecHash:   specHash,
		KVM:        img.KVM,
		CPUs:       uint(max(target.Spec.CPUs, 1)),
		MemoryKiB:  uint64(memory.Value() / 1024),
		UEFI:       target.Spec.Firmware == v1alpha1.FirmwareUEFI,
		Kernel:     img.Kernel,
		Initrd:     img.Initrd,
		Cmdline:    img.Cmdline,
		ConsoleLog: filepath.Join(dir, "console.log"),
	}
	// Each disk's file is made by a program of its own (qemu-img for an
	// overlay, genisoimage for a seed): they run side by side, as the
	// clone's guest waits for the slowest only.
	cfg.Disks = make([]hypervisor.DiskConfig, len(target.Spec.Disks))
	makers := make([]func() error, len(target.Spec.Disks))
	for i, d := range target.Spec.Disks {
		var err error
		if cfg.Disks[i], makers[i], err = c.cloneDisk(ctx, target, dir, d, img); err != nil {
			return nil, nil, err
		}
	}
	makeFiles := func() error {
		errs := make([]error, len(makers))
		var wg sync.WaitGroup
		for i, m := range makers {
			if m != nil {
				wg.Go(func() { errs[i] = m() })
			}
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return err
		}
		for i, err := range errs {
			if err != nil {
				return fail("DiskFailed", "disk %s: %v", target.Spec.Disks[i].Name, err)
			}
		}
		return nil
	}
	nics, err := vm.NICConfigs(ctx, c.network, target)
	if err != nil {
		return nil, nil, fail("Network", "%v", err)
	}
	cfg.NICs = nics
	if _, err := hypervisor.DomainXML(cfg); err != nil {
		return nil, nil, fail("InvalidDomain", "%v", err)
	}
	return cfg, makeFiles, nil
}

// cloneDisk returns disk d of the clone, and what makes its file (nil for
// a shared one).
func (c *Controller) cloneDisk(ctx context.Context, target *v1alpha1.VirtualMachine, dir string, d v1alpha1.Disk, img *hypervisor.CloneImage) (hypervisor.DiskConfig, func() error, error) {
	dc := hypervisor.DiskConfig{Name: d.Name, Bus: string(d.Bus), ReadOnly: d.ReadOnly}
	if d.CloudInit != nil {
		dc.Path, dc.Format, dc.CDROM = filepath.Join(dir, "seed-"+d.Name+".iso"), "raw", true
		return dc, func() error {
			return disks.Seed(ctx, dc.Path, disks.SeedConfig{
				InstanceID:    string(target.UID),
				LocalHostname: target.Name,
				UserData:      d.CloudInit.UserData,
				NetworkData:   d.CloudInit.NetworkData,
			})
		}, nil
	}
	if frozen := img.Disk(d.Name); frozen != nil {
		dc.Path, dc.Format = filepath.Join(dir, "disk-"+d.Name+".qcow2"), "qcow2"
		dc.BackingPath, dc.BackingFormat, dc.BackingChain = frozen.Path, frozen.Format, frozen.Backing
		return dc, func() error {
			return disks.CloneOverlay(ctx, frozen.Path, disks.Format(frozen.Format), dc.Path, frozen.VirtualSize)
		}, nil
	}
	for _, s := range img.SharedDisks {
		if s.Name != d.Name {
			continue
		}
		dc.Path, dc.Format, dc.ReadOnly = s.Path, s.Format, true
		if len(s.Backing) > 0 {
			dc.BackingPath, dc.BackingFormat, dc.BackingChain = s.Backing[0].Path, s.Backing[0].Format, s.Backing[1:]
		}
		return dc, nil, nil
	}
	return dc, nil, fail("DiskNotInImage", "disk %s is not in the clone image (the source's spec changed since it was captured?)", d.Name)
}
