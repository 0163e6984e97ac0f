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
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// ErrSnapshotNotFound says the domain has no snapshot of that name.
var ErrSnapshotNotFound = errors.New("snapshot not found")

// ErrSnapshotUnsupported says the domain's disks cannot hold an internal
// snapshot (a writable disk is not qcow2).
var ErrSnapshotUnsupported = errors.New("internal snapshots are not possible for this domain")

// Snapshotter takes, reverts and deletes a domain's snapshots. They are
// always libvirt *internal* snapshots, kept inside the domain's qcow2 files
// (disk state and, when the domain is active, its memory): libvirt 9 cannot
// revert external snapshots, and mixing both kinds breaks later deletes.
// Like Hypervisor, every call is keyed by the domain UUID, idempotent, and
// refuses domains Vessel does not own.
type Snapshotter interface {
	// CreateSnapshot takes a snapshot named spec.Name, or returns the
	// existing one of that name (a retried create is not an error).
	CreateSnapshot(ctx context.Context, uid string, spec SnapshotSpec) (*Snapshot, error)
	// LookupSnapshot returns the named snapshot, ErrSnapshotNotFound, or
	// ErrNotFound when the domain is gone.
	LookupSnapshot(ctx context.Context, uid, name string) (*Snapshot, error)
	// RevertToSnapshot returns the domain's disks (and memory, for a
	// snapshot that has it and a target that runs) to the snapshot and
	// leaves the domain in target.
	RevertToSnapshot(ctx context.Context, uid, name string, target RevertTarget) error
	// DeleteSnapshot removes the snapshot's data and metadata. Succeeds
	// when the snapshot or the domain does not exist.
	DeleteSnapshot(ctx context.Context, uid, name string) error
}

var _ Snapshotter = &Libvirt{}

// SnapshotSpec is a snapshot to take.
type SnapshotSpec struct {
	// Name is the libvirt snapshot name; Vessel uses the
	// VirtualMachineSnapshot's UID.
	Name string
	// Description is stored with the snapshot, for people running virsh.
	Description string
}

// Snapshot is what libvirt keeps about one snapshot.
type Snapshot struct {
	Name         string
	Description  string
	CreationTime time.Time
	// State is the domain's state when the snapshot was taken.
	State State
	// Memory is true when the snapshot holds the guest's memory and device
	// state (it was taken of an active domain): reverting to it resumes
	// the guest where it was.
	Memory bool
	// SizeBytes is the space the snapshot took in the domain's files when
	// it was taken (saved memory plus qcow2 metadata). Guest writes after
	// the snapshot make it pin more data over time, which is not counted.
	SizeBytes int64
}

// RevertTarget is the state a revert leaves the domain in.
type RevertTarget string

const (
	// RevertRunning: the guest runs after the revert. A snapshot with
	// memory resumes where it was; one without boots from its disks.
	RevertRunning RevertTarget = "Running"
	// RevertPaused: as RevertRunning, with the CPUs suspended.
	RevertPaused RevertTarget = "Paused"
	// RevertShutoff: only the disks are returned to the snapshot; the
	// domain is left shut off and any saved memory is discarded.
	RevertShutoff RevertTarget = "Shutoff"
)

// CreateSnapshot implements Snapshotter.
func (l *Libvirt) CreateSnapshot(ctx context.Context, uid string, spec SnapshotSpec) (*Snapshot, error) {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return nil, err
	}
	if s, err := lookupSnapshot(c, dom, uid, spec.Name); !errors.Is(err, ErrSnapshotNotFound) {
		return s, err
	}
	domXML, err := c.DomainGetXMLDesc(dom, 0)
	if err != nil {
		return nil, fmt.Errorf("read definition of domain %s: %w", uid, err)
	}
	x, files, err := snapshotXML(domXML, spec)
	if err != nil {
		return nil, fmt.Errorf("snapshot of domain %s: %w", uid, err)
	}
	before := allocated(files)
	snap, err := c.DomainSnapshotCreateXML(dom, x, uint32(golibvirt.DomainSnapshotCreateAtomic))
	if err != nil {
		return nil, fmt.Errorf("create snapshot %s of domain %s: %w", spec.Name, uid, err)
	}
	s, err := describeSnapshot(c, snap, uid)
	if err != nil {
		return nil, err
	}
	s.SizeBytes = max(allocated(files)-before, 0)
	return s, nil
}

// snapshotXML builds an internal snapshot request for the domain defined
// by domXML: every writable disk internal (which requires qcow2), read-only
// disks and CD-ROMs left out. Memory is left to libvirt's default, which
// for an active domain is internal too. It returns the writable disk files.
func snapshotXML(domXML string, spec SnapshotSpec) (string, []string, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(domXML); err != nil {
		return "", nil, fmt.Errorf("parse domain definition: %w", err)
	}
	s := libvirtxml.DomainSnapshot{Name: spec.Name, Description: spec.Description, Disks: &libvirtxml.DomainSnapshotDisks{}}
	var files []string
	if d.Devices != nil {
		for _, disk := range d.Devices.Disks {
			if disk.Target == nil {
				continue
			}
			mode := "internal"
			if disk.ReadOnly != nil || disk.Device == "cdrom" || disk.Device == "floppy" {
				mode = "no"
			} else {
				format := ""
				if disk.Driver != nil {
					format = disk.Driver.Type
				}
				if format != "qcow2" {
					return "", nil, fmt.Errorf("%w: disk %s is %s, and internal snapshots need every writable disk in qcow2",
						ErrSnapshotUnsupported, diskLabel(disk), orUnknown(format))
				}
				if disk.Source != nil && disk.Source.File != nil {
					files = append(files, disk.Source.File.File)
				}
			}
			s.Disks.Disks = append(s.Disks.Disks, libvirtxml.DomainSnapshotDisk{Name: disk.Target.Dev, Snapshot: mode})
		}
	}
	if len(files) == 0 {
		return "", nil, fmt.Errorf("%w: it has no writable qcow2 disk to keep the snapshot in", ErrSnapshotUnsupported)
	}
	x, err := s.Marshal()
	if err != nil {
		return "", nil, fmt.Errorf("marshal snapshot %s: %w", spec.Name, err)
	}
	return x, files, nil
}

func diskLabel(d libvirtxml.DomainDisk) string {
	if d.Alias != nil && len(d.Alias.Name) > len("ua-disk-") && d.Alias.Name[:len("ua-disk-")] == "ua-disk-" {
		return fmt.Sprintf("%q (%s)", d.Alias.Name[len("ua-disk-"):], d.Target.Dev)
	}
	return d.Target.Dev
}

func orUnknown(s string) string {
	if s == "" {
		return "of unknown format"
	}
	return s
}

// allocated sums the bytes the files occupy on disk.
func allocated(files []string) int64 {
	var n int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
	}
	return n
}

// LookupSnapshot implements Snapshotter. Its SizeBytes is the saved memory
// as qemu-img reports it: the growth measured at creation is not kept.
func (l *Libvirt) LookupSnapshot(ctx context.Context, uid, name string) (*Snapshot, error) {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return nil, err
	}
	s, err := lookupSnapshot(c, dom, uid, name)
	if err != nil {
		return nil, err
	}
	if s.Memory {
		if domXML, err := c.DomainGetXMLDesc(dom, 0); err == nil {
			if _, files, err := snapshotXML(domXML, SnapshotSpec{Name: name}); err == nil {
				s.SizeBytes = vmStateSize(ctx, files, name)
			}
		}
	}
	return s, nil
}

// vmStateSize is the size of the memory saved in the named internal
// snapshot of the qcow2 files, from `qemu-img info` (which may read an
// image QEMU has open with -U). The files are the domain's qcow2 disks:
// the format is given, never probed.
func vmStateSize(ctx context.Context, files []string, name string) int64 {
	var total int64
	for _, f := range files {
		out, err := exec.CommandContext(ctx, "qemu-img", "info", "-f", "qcow2", "-U", "--output=json", f).Output()
		if err != nil {
			continue
		}
		var info struct {
			Snapshots []struct {
				Name        string `json:"name"`
				VMStateSize int64  `json:"vm-state-size"`
			} `json:"snapshots"`
		}
		if json.Unmarshal(out, &info) != nil {
			continue
		}
		for _, s := range info.Snapshots {
			if s.Name == name {
				total += s.VMStateSize
			}
		}
	}
	return total
}

func lookupSnapshot(c *golibvirt.Libvirt, dom golibvirt.Domain, uid, name string) (*Snapshot, error) {
	snap, err := c.DomainSnapshotLookupByName(dom, name, 0)
	if err != nil {
		if isCode(err, golibvirt.ErrNoDomainSnapshot) {
			return nil, ErrSnapshotNotFound
		}
		if isCode(err, golibvirt.ErrNoDomain) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("look up snapshot %s of domain %s: %w", name, uid, err)
	}
	return describeSnapshot(c, snap, uid)
}

func describeSnapshot(c *golibvirt.Libvirt, snap golibvirt.DomainSnapshot, uid string) (*Snapshot, error) {
	x, err := c.DomainSnapshotGetXMLDesc(snap, 0)
	if err != nil {
		if isCode(err, golibvirt.ErrNoDomainSnapshot) {
			return nil, ErrSnapshotNotFound
		}
		return nil, fmt.Errorf("read snapshot %s of domain %s: %w", snap.Name, uid, err)
	}
	return parseSnapshot(x)
}

// parseSnapshot reads what Vessel needs from a snapshot's XML.
func parseSnapshot(x string) (*Snapshot, error) {
	var s libvirtxml.DomainSnapshot
	if err := s.Unmarshal(x); err != nil {
		return nil, fmt.Errorf("parse snapshot: %w", err)
	}
	out := &Snapshot{Name: s.Name, Description: s.Description}
	if sec, err := strconv.ParseInt(s.CreationTime, 10, 64); err == nil {
		out.CreationTime = time.Unix(sec, 0)
	}
	switch s.State {
	case "running":
		out.State = StateRunning
	case "paused":
		out.State = StatePaused
	case "shutoff":
		out.State = StateShutoff
	case "shutdown":
		out.State = StateShutdown
	case "crashed":
		out.State = StateCrashed
	default:
		out.State = StateOther
	}
	out.Memory = s.Memory != nil && s.Memory.Snapshot == "internal"
	return out, nil
}

// RevertToSnapshot implements Snapshotter.
func (l *Libvirt) RevertToSnapshot(ctx context.Context, uid, name string, target RevertTarget) error {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return err
	}
	snap, err := c.DomainSnapshotLookupByName(dom, name, 0)
	if err != nil {
		if isCode(err, golibvirt.ErrNoDomainSnapshot) {
			return ErrSnapshotNotFound
		}
		return fmt.Errorf("look up snapshot %s of domain %s: %w", name, uid, err)
	}
	var flags golibvirt.DomainSnapshotRevertFlags
	switch target {
	case RevertRunning:
		flags = golibvirt.DomainSnapshotRevertRunning
	case RevertPaused, RevertShutoff:
		// A snapshot with memory can only be reverted into an active
		// domain; for RevertShutoff it is stopped right after, before a
		// single guest instruction ran.
		flags = golibvirt.DomainSnapshotRevertPaused
		if target == RevertShutoff {
			s, err := describeSnapshot(c, snap, uid)
			if err != nil {
				return err
			}
			if !s.Memory {
				flags = 0
			}
		}
	default:
		return fmt.Errorf("revert domain %s: unknown target %q", uid, target)
	}
	err = c.DomainRevertToSnapshot(snap, uint32(flags))
	if isCode(err, golibvirt.ErrSnapshotRevertRisky) {
		// The snapshot's definition is not ABI-compatible with the running
		// domain (the VM's spec changed since): libvirt must start a new
		// QEMU for it, which is what a revert means here anyway.
		err = c.DomainRevertToSnapshot(snap, uint32(flags|golibvirt.DomainSnapshotRevertForce))
	}
	if err != nil {
		return fmt.Errorf("revert domain %s to snapshot %s: %w", uid, name, err)
	}
	if target == RevertShutoff && flags != 0 {
		if err := c.DomainDestroyFlags(dom, golibvirt.DomainDestroyDefault); err != nil && ignore(err, golibvirt.ErrOperationInvalid) != nil {
			return fmt.Errorf("stop domain %s after reverting to snapshot %s: %w", uid, name, err)
		}
	}
	return nil
}

// DeleteSnapshot implements Snapshotter.
func (l *Libvirt) DeleteSnapshot(ctx context.Context, uid, name string) error {
	c, dom, _, err := l.lookup(uid)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	snap, err := c.DomainSnapshotLookupByName(dom, name, 0)
	if err != nil {
		if isCode(err, golibvirt.ErrNoDomainSnapshot) || isCode(err, golibvirt.ErrNoDomain) {
			return nil
		}
		return fmt.Errorf("look up snapshot %s of domain %s: %w", name, uid, err)
	}
	if err := c.DomainSnapshotDelete(snap, 0); err != nil {
		if isCode(err, golibvirt.ErrNoDomainSnapshot) || isCode(err, golibvirt.ErrNoDomain) {
			return nil
		}
		return fmt.Errorf("delete snapshot %s of domain %s: %w", name, uid, err)
	}
	return nil
}
