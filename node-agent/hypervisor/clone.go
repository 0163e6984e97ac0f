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
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"k8s.io/klog/v2"
	utiltrace "k8s.io/utils/trace"
	"libvirt.org/go/libvirtxml"
)

// ErrNotActive says a memory image was asked of a domain whose guest does
// not run.
var ErrNotActive = errors.New("the domain's guest is not running")

// ErrNoCloneImage says a directory holds no complete clone image.
var ErrNoCloneImage = errors.New("no clone image")

// Cloner makes new domains from a domain's disks and memory: a clone image
// is captured once (a running guest pauses for the copy of its disks and
// the save of its memory, then runs on), and every clone is a new domain
// with its own overlays on the image's frozen disk copies, resumed from its
// memory or booted. Like Snapshotter it is an optional interface of a
// Hypervisor, keyed by domain UUID, and never touches domains Vessel does
// not own.
type Cloner interface {
	// CaptureImage copies the writable disks of domain uid to dir and,
	// with memory, saves the memory of its running (or paused) guest there
	// at the same instant (ErrNotActive when it does not run); the guest is
	// left as it was. Without memory a running guest still pauses for the
	// copy, so the disks are consistent. An image already complete in dir
	// is returned as it is.
	CaptureImage(ctx context.Context, uid, dir string, memory bool) (*CloneImage, error)
	// RestoreClone defines cfg's domain and resumes it from img's memory,
	// running or paused, with a new VM generation ID. cfg's disks must be
	// overlays of img's frozen disks (or the same read-only files). A
	// domain of cfg's UUID that is already active is left as it is.
	// makeFiles, if not nil, makes cfg's disk files: it runs while the
	// domain is defined, and the restore waits for both.
	RestoreClone(ctx context.Context, img *CloneImage, cfg *DomainConfig, paused bool, makeFiles func() error) error
	// SendIdentity tells the running guest of domain uid its new identity
	// on the identity port (identity.go) and says whether the guest
	// acknowledged it within the context's deadline.
	SendIdentity(ctx context.Context, uid string, id GuestIdentity) (acknowledged bool, err error)
}

var _ Cloner = &Libvirt{}

// Files of a clone image directory.
const (
	memoryImageFile = "memory.save"
	imageInfoFile   = "image.json"
)

// CloneImage is a captured clone image: frozen copies of a domain's
// writable disks and, for memory clones, its memory (a libvirt save image),
// in one directory.
type CloneImage struct {
	// Dir holds the image.
	Dir string `json:"-"`
	// SourceUID is the domain the image was captured from.
	SourceUID string `json:"sourceUID"`
	// SpecHash is the source's spec hash at capture (Domain.SpecHash): a
	// clone must be made from the same spec.
	SpecHash string `json:"specHash"`
	// Disks are the frozen copies of the source's writable disks.
	Disks []FrozenDisk `json:"disks"`
	// SharedDisks are the source's read-only disks (not CD-ROMs): nothing
	// writes them, so clones attach the same files.
	SharedDisks []SharedDisk `json:"sharedDisks,omitempty"`
	// Kernel, Initrd and Cmdline boot the source directly (empty when it
	// boots from a disk); its clones run the same kernel.
	Kernel  string `json:"kernel,omitempty"`
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
	// KVM says the source is a KVM domain (else TCG).
	KVM bool `json:"kvm,omitempty"`
	// CapturedAt is when the memory was saved.
	CapturedAt time.Time `json:"capturedAt"`
	// Paused is how long the source's guest was paused for the capture.
	Paused time.Duration `json:"paused"`
	// Memory says the image holds the guest's memory.
	Memory bool `json:"memory"`
}

// FrozenDisk is a copy of one writable disk of the source, never written
// again: clones' overlays are backed by it.
type FrozenDisk struct {
	// Name is the Vessel disk name.
	Name string `json:"name"`
	// Path and Format are the copy's.
	Path   string `json:"path"`
	Format string `json:"format"`
	// VirtualSize is the disk's size as the guest sees it.
	VirtualSize int64 `json:"virtualSize"`
	// Backing is the copy's own backing chain (the source's image), as the
	// source's domain declared it.
	Backing []BackingFile `json:"backing,omitempty"`
}

// SharedDisk is a read-only disk of the source, attached as it is.
type SharedDisk struct {
	Name    string        `json:"name"`
	Path    string        `json:"path"`
	Format  string        `json:"format"`
	Backing []BackingFile `json:"backing,omitempty"`
}

// MemoryFile is the libvirt save image holding the memory.
func (m *CloneImage) MemoryFile() string { return filepath.Join(m.Dir, memoryImageFile) }

// Disk returns the frozen copy of the named disk, or nil.
func (m *CloneImage) Disk(name string) *FrozenDisk {
	for i := range m.Disks {
		if m.Disks[i].Name == name {
			return &m.Disks[i]
		}
	}
	return nil
}

// ReadCloneImage reads the image captured in dir, ErrNoCloneImage when
// there is none or its capture did not finish. An image whose memory was
// removed since (its clones no longer need it) says Memory false.
func ReadCloneImage(dir string) (*CloneImage, error) {
	b, err := os.ReadFile(filepath.Join(dir, imageInfoFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoCloneImage
	}
	if err != nil {
		return nil, fmt.Errorf("read clone image in %s: %w", dir, err)
	}
	img := &CloneImage{}
	if err := json.Unmarshal(b, img); err != nil {
		return nil, fmt.Errorf("read clone image in %s: %w", dir, err)
	}
	img.Dir = dir
	if _, err := os.Stat(img.MemoryFile()); err != nil {
		img.Memory = false
	}
	return img, nil
}

// CaptureImage implements Cloner.
func (l *Libvirt) CaptureImage(ctx context.Context, uid, dir string, memory bool) (*CloneImage, error) {
	if img, err := ReadCloneImage(dir); err == nil && (img.Memory || !memory) {
		return img, nil
	}
	c, dom, st, err := l.lookup(uid)
	if err != nil {
		return nil, err
	}
	state, _, err := c.DomainGetState(dom, 0)
	if err != nil {
		return nil, fmt.Errorf("get state of domain %s: %w", uid, err)
	}
	running := golibvirt.DomainState(state) == golibvirt.DomainRunning
	active := running || golibvirt.DomainState(state) == golibvirt.DomainPaused
	if memory && !active {
		return nil, ErrNotActive
	}
	live, err := c.DomainGetXMLDesc(dom, 0) // the running definition, if any
	if err != nil {
		return nil, fmt.Errorf("read definition of domain %s: %w", uid, err)
	}
	src, err := readSource(live)
	if err != nil {
		return nil, fmt.Errorf("clone image of domain %s: %w", uid, err)
	}
	disks, targets := src.disks, src.targets
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create clone image directory: %w", err)
	}
	img := &CloneImage{Dir: dir, SourceUID: uid, SpecHash: st.specHash, Memory: memory,
		SharedDisks: src.shared, Kernel: src.kernel, Initrd: src.initrd, Cmdline: src.cmdline, KVM: src.kvm}
	// Sizes are read before the pause, to keep it short.
	for i := range disks {
		if disks[i].VirtualSize, err = virtualSize(ctx, disks[i].src, disks[i].Format); err != nil {
			return nil, err
		}
	}

	// From here until the guest runs again, nothing writes the disks: the
	// copies and the memory are of one instant.
	if running {
		if err := c.DomainSuspend(dom); err != nil {
			return nil, fmt.Errorf("pause domain %s for its clone image: %w", uid, err)
		}
	}
	pausedAt := time.Now()
	resume := func() error {
		if !running {
			return nil
		}
		if err := c.DomainResume(dom); err != nil && ignore(err, golibvirt.ErrOperationInvalid) != nil {
			return fmt.Errorf("resume domain %s after its clone image: %w", uid, err)
		}
		return nil
	}
	err = l.freeze(c, dom, disks, targets, img, memory)
	img.Paused = time.Since(pausedAt)
	if rerr := resume(); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	for _, d := range disks {
		img.Disks = append(img.Disks, d.FrozenDisk)
	}
	img.CapturedAt = pausedAt
	b, err := json.Marshal(img)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, imageInfoFile), b); err != nil {
		return nil, fmt.Errorf("write clone image: %w", err)
	}
	return img, nil
}

// freeze copies the paused (or stopped) domain's writable disks into
// img.Dir and, with memory, saves its memory there: an external memory
// snapshot without metadata, which leaves the domain paused and keeps no
// snapshot in libvirt (internal and external snapshots do not mix).
func (l *Libvirt) freeze(c *golibvirt.Libvirt, dom golibvirt.Domain, disks []sourceDisk, targets []string, img *CloneImage, memory bool) error {
	for i := range disks {
		d := &disks[i]
		d.Path = filepath.Join(img.Dir, "disk-"+d.Name+"."+d.Format)
		if err := copyFile(d.src, d.Path); err != nil {
			return fmt.Errorf("copy disk %s for the clone image: %w", d.Name, err)
		}
	}
	if !memory {
		return nil
	}
	tmp := filepath.Join(img.Dir, "."+memoryImageFile+".tmp")
	_ = os.Remove(tmp)
	s := libvirtxml.DomainSnapshot{
		Description: "vessel.dev memory image of " + img.SourceUID,
		Memory:      &libvirtxml.DomainSnapshotMemory{Snapshot: "external", File: tmp},
		Disks:       &libvirtxml.DomainSnapshotDisks{},
	}
	for _, t := range targets {
		s.Disks.Disks = append(s.Disks.Disks, libvirtxml.DomainSnapshotDisk{Name: t, Snapshot: "no"})
	}
	x, err := s.Marshal()
	if err != nil {
		return err
	}
	if _, err := c.DomainSnapshotCreateXML(dom, x, uint32(golibvirt.DomainSnapshotCreateNoMetadata)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("save memory of domain %s: %w", img.SourceUID, err)
	}
	if err := os.Rename(tmp, img.MemoryFile()); err != nil {
		return fmt.Errorf("save memory of domain %s: %w", img.SourceUID, err)
	}
	return nil
}

// sourceDisk is a writable disk of the source domain and its frozen copy.
type sourceDisk struct {
	FrozenDisk
	src string
}

// source is what a clone image needs of its source's definition.
type source struct {
	disks                   []sourceDisk
	shared                  []SharedDisk
	targets                 []string
	kernel, initrd, cmdline string
	kvm                     bool
}

// readSource reads the domain's writable and read-only file disks, every
// disk target (an external memory snapshot must name each one) and how it
// boots.
func readSource(domXML string) (*source, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(domXML); err != nil {
		return nil, fmt.Errorf("parse domain definition: %w", err)
	}
	src := &source{kvm: d.Type == "kvm"}
	if d.OS != nil {
		src.kernel, src.initrd, src.cmdline = d.OS.Kernel, d.OS.Initrd, d.OS.Cmdline
	}
	if d.Devices == nil {
		return src, nil
	}
	for _, disk := range d.Devices.Disks {
		if disk.Target == nil {
			continue
		}
		src.targets = append(src.targets, disk.Target.Dev)
		if disk.Device == "cdrom" || disk.Device == "floppy" {
			continue
		}
		if disk.Source == nil || disk.Source.File == nil || disk.Driver == nil || disk.Driver.Type == "" {
			return nil, fmt.Errorf("disk %s is not a file of a declared format", diskLabel(disk))
		}
		name := disk.Target.Dev
		if disk.Alias != nil && strings.HasPrefix(disk.Alias.Name, "ua-disk-") {
			name = strings.TrimPrefix(disk.Alias.Name, "ua-disk-")
		}
		var backing []BackingFile
		for b := disk.BackingStore; b != nil && b.Source != nil && b.Source.File != nil; b = b.BackingStore {
			if b.Format == nil || b.Format.Type == "" {
				return nil, fmt.Errorf("disk %s: backing file %s without a declared format", name, b.Source.File.File)
			}
			backing = append(backing, BackingFile{Path: b.Source.File.File, Format: b.Format.Type})
		}
		// A read-only disk is shared with clones, unless it is one of the
		// source's own overlays (an image disk), which goes with the
		// source: that is copied like a writable one.
		if disk.ReadOnly != nil && len(backing) == 0 {
			src.shared = append(src.shared, SharedDisk{Name: name, Path: disk.Source.File.File, Format: disk.Driver.Type, Backing: backing})
			continue
		}
		src.disks = append(src.disks, sourceDisk{
			FrozenDisk: FrozenDisk{Name: name, Format: disk.Driver.Type, Backing: backing},
			src:        disk.Source.File.File,
		})
	}
	return src, nil
}

// virtualSize is the guest-visible size of a disk file of a declared
// format (qemu-img may read an image QEMU has open with -U).
func virtualSize(ctx context.Context, path, format string) (int64, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "-U", "-f", format, "--output=json", path).Output()
	if err != nil {
		return 0, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return 0, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	return info.VirtualSize, nil
}

// copyFile copies src to dst (0600), through a temporary file.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// RestoreClone implements Cloner.
func (l *Libvirt) RestoreClone(ctx context.Context, img *CloneImage, cfg *DomainConfig, paused bool, makeFiles func() error) error {
	c, err := l.client()
	if err != nil {
		return err
	}
	uid := cfg.Owner.UID
	switch dom, err := l.Lookup(ctx, uid); {
	case err == nil && dom.State.Active():
		return nil // restored already
	case err != nil && !errors.Is(err, ErrNotFound):
		return err
	}
	if !img.Memory {
		return fmt.Errorf("%w: the image in %s holds no memory", ErrNoCloneImage, img.Dir)
	}
	src, err := os.Open(img.MemoryFile())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoCloneImage, err)
	}
	defer src.Close()
	trace := utiltrace.FromContext(ctx).Nest("Restore")
	defer trace.LogIfLong(time.Second)
	saved, err := readSaveImage(src)
	if err != nil {
		return fmt.Errorf("memory image in %s: %w", img.Dir, err)
	}
	x, err := cloneDomainXML(saved.xml, cfg)
	if err != nil {
		return fmt.Errorf("clone domain %s: %w", uid, err)
	}
	// The clone's own save image: its XML, the source's memory, fed to
	// libvirt through a pipe (saveImagePipe). It is only needed for the
	// restore. The persistent definition is the usual one, used from the
	// next boot on; the restored domain runs the saved hardware with the
	// clone's files and identity. libvirt defines while the caller's disk
	// files are made.
	var wg sync.WaitGroup
	var derr, ferr error
	var took struct{ define, files, restore time.Duration }
	begin := time.Now()
	wg.Go(func() { derr = l.Define(ctx, cfg); took.define = time.Since(begin) })
	if makeFiles != nil {
		wg.Go(func() { ferr = makeFiles(); took.files = time.Since(begin) })
	}
	wg.Wait()
	if err := errors.Join(ferr, derr); err != nil {
		return err
	}
	trace.Step("Made the clone's files and defined the domain")
	pipe, err := openSaveImagePipe(filepath.Join(filepath.Dir(cfg.ConsoleLog), ".restore.save"), src, saved, x)
	if err != nil {
		return err
	}
	flags := golibvirt.DomainSaveRunning
	if paused {
		flags = golibvirt.DomainSavePaused
	}
	begin = time.Now()
	rerr := c.DomainRestoreFlags(pipe.path, nil, uint32(flags))
	took.restore = time.Since(begin)
	perr := pipe.close()
	switch {
	case rerr != nil && perr != nil && !errors.Is(perr, errPipeNotOpened):
		return fmt.Errorf("restore domain %s from memory image %s: %w (%v)", uid, img.Dir, rerr, perr)
	case rerr != nil:
		return fmt.Errorf("restore domain %s from memory image %s: %w", uid, img.Dir, rerr)
	case perr != nil:
		// The guest runs: libvirt read what it needed.
		klog.FromContext(ctx).Info("The save image pipe of a restored clone ended with an error", "domain", uid, "err", perr)
	}
	trace.Step("Restored the domain")
	klog.FromContext(ctx).V(2).Info("Restored a memory clone", "domain", uid,
		"files", took.files, "define", took.define, "libvirtRestore", took.restore)
	return nil
}
