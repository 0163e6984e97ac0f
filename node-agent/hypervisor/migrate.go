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
	"errors"
	"fmt"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// Migrator is what a Hypervisor that can live-migrate its domains offers
// besides Hypervisor.
type Migrator interface {
	// MigratableXML is the domain's definition as libvirt would send it to
	// another host.
	MigratableXML(ctx context.Context, uid string) (string, error)
	// Migrate live-migrates the running domain to the libvirtd at dconnURI
	// (peer to peer: this libvirtd drives it), copying its writable disks,
	// and returns when the guest runs there or the migration failed (the
	// guest then runs on here). The domain stays defined here, shut off
	// with reason migrated, so its statistics can be read: Undefine it
	// after.
	Migrate(ctx context.Context, uid string, m Migration) error
	// MigrationStats are the statistics of the domain's migration under
	// way, or with completed of its last completed one.
	MigrationStats(ctx context.Context, uid string, completed bool) (MigrationStats, error)
	// AbortMigration cancels the domain's migration under way.
	AbortMigration(ctx context.Context, uid string) error
	// MigratedAway says the domain is shut off because it migrated.
	MigratedAway(ctx context.Context, uid string) (bool, error)
	// ResetInterface takes the interface with mac of the running domain
	// down and up, so the guest asks DHCP again.
	ResetInterface(ctx context.Context, uid, mac string) error
}

// Migration are the endpoints of one migration, as this libvirtd sees
// them.
type Migration struct {
	// DconnURI reaches the target libvirtd (the source libvirtd connects).
	DconnURI string
	// MigrateURI is where the target QEMU listens for the memory stream and
	// the source QEMU connects ("tcp://127.0.0.1:49152").
	MigrateURI string
	// DisksURI is where the target's NBD server listens for the disk copy
	// and the source QEMU connects.
	DisksURI string
	// ListenAddress is what the target QEMU listens on.
	ListenAddress string
	// DestXML is the domain's definition on the target.
	DestXML string
	// BandwidthMiBs caps the memory stream (0: unlimited).
	BandwidthMiBs uint64
}

// MigrationStats are libvirt's job statistics of a migration.
type MigrationStats struct {
	// Active is true while the migration runs.
	Active bool
	// DataTotal, DataProcessed are memory and disk bytes.
	DataTotal, DataProcessed uint64
	// MemoryNormalPages are the memory pages sent in full.
	MemoryNormalPages uint64
	// Downtime is how long the guest was paused for the switch-over
	// (completed migrations).
	Downtime time.Duration
	// Elapsed is how long the migration took.
	Elapsed time.Duration
}

var _ Migrator = &Libvirt{}

// MigratableXML implements Migrator.
func (l *Libvirt) MigratableXML(ctx context.Context, uid string) (string, error) {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return "", err
	}
	x, err := c.DomainGetXMLDesc(dom, golibvirt.DomainXMLMigratable|golibvirt.DomainXMLSecure)
	if err != nil {
		return "", fmt.Errorf("read migratable definition of domain %s: %w", uid, err)
	}
	return x, nil
}

// Migrate implements Migrator.
func (l *Libvirt) Migrate(ctx context.Context, uid string, m Migration) error {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return err
	}
	params := []golibvirt.TypedParam{
		{Field: "migrate_uri", Value: *golibvirt.NewTypedParamValueString(m.MigrateURI)},
		{Field: "disks_uri", Value: *golibvirt.NewTypedParamValueString(m.DisksURI)},
		{Field: "listen_address", Value: *golibvirt.NewTypedParamValueString(m.ListenAddress)},
		{Field: "destination_xml", Value: *golibvirt.NewTypedParamValueString(m.DestXML)},
	}
	if m.BandwidthMiBs > 0 {
		params = append(params, golibvirt.TypedParam{Field: "bandwidth", Value: *golibvirt.NewTypedParamValueUllong(m.BandwidthMiBs)})
	}
	flags := golibvirt.MigrateLive | golibvirt.MigratePeer2peer | golibvirt.MigratePersistDest | golibvirt.MigrateNonSharedDisk
	// virDomainMigrateToURI3 with VIR_MIGRATE_PEER2PEER is this one call.
	if _, err := c.DomainMigratePerform3Params(dom, golibvirt.OptString{m.DconnURI}, params, nil, flags); err != nil {
		return fmt.Errorf("migrate domain %s: %w", uid, err)
	}
	return nil
}

// MigrationStats implements Migrator.
func (l *Libvirt) MigrationStats(ctx context.Context, uid string, completed bool) (MigrationStats, error) {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return MigrationStats{}, err
	}
	var flags golibvirt.DomainGetJobStatsFlags
	if completed {
		flags = golibvirt.DomainJobStatsCompleted
	}
	typ, params, err := c.DomainGetJobStats(dom, flags)
	if err != nil {
		return MigrationStats{}, fmt.Errorf("read job statistics of domain %s: %w", uid, err)
	}
	s := MigrationStats{Active: typ == int32(golibvirt.DomainJobBounded) || typ == int32(golibvirt.DomainJobUnbounded)}
	for _, p := range params {
		v := paramUint(p.Value)
		switch p.Field {
		case "data_total":
			s.DataTotal = v
		case "data_processed":
			s.DataProcessed = v
		case "memory_normal":
			s.MemoryNormalPages = v
		case "downtime":
			s.Downtime = time.Duration(v) * time.Millisecond
		case "time_elapsed":
			s.Elapsed = time.Duration(v) * time.Millisecond
		}
	}
	return s, nil
}

// AbortMigration implements Migrator.
func (l *Libvirt) AbortMigration(ctx context.Context, uid string) error {
	c, dom, _, err := l.lookup(uid)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := c.DomainAbortJob(dom); err != nil {
		if ignore(err, golibvirt.ErrOperationInvalid) == nil {
			return nil
		}
		return fmt.Errorf("abort migration of domain %s: %w", uid, err)
	}
	return nil
}

// MigratedAway implements Migrator.
func (l *Libvirt) MigratedAway(ctx context.Context, uid string) (bool, error) {
	c, dom, _, err := l.lookup(uid)
	if err != nil {
		return false, err
	}
	state, reason, err := c.DomainGetState(dom, 0)
	if err != nil {
		return false, fmt.Errorf("get state of domain %s: %w", uid, err)
	}
	return golibvirt.DomainState(state) == golibvirt.DomainShutoff && golibvirt.DomainShutoffReason(reason) == golibvirt.DomainShutoffMigrated, nil
}

// MigrationTarget is how a domain's definition changes on its way to
// another hypervisor.
type MigrationTarget struct {
	// Owner is the stamp the domain gets there: the target's hypervisor
	// name and UID, so its agent owns the domain once the VM is bound
	// to it.
	Owner Owner
	// SpecHash is kept from the source.
	SpecHash string
	// Paths maps files of the source (disks, seed images, console log,
	// kernel) to where they are on the target. A writable disk found here
	// is copied by the migration into a file without a backing chain.
	Paths map[string]string
	// NICs maps interfaces, by MAC address, to the target's bridge and
	// tap device (Managed interfaces).
	NICs map[string]NICConfig
}

// MigrationDestXML rewrites a migratable definition for the target.
func MigrationDestXML(src string, t MigrationTarget) (string, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(src); err != nil {
		return "", fmt.Errorf("parse domain definition: %w", err)
	}
	d.Metadata = &libvirtxml.DomainMetadata{XML: marshalOwner(t.Owner, t.SpecHash)}
	move := func(p string) (string, error) {
		if p == "" {
			return p, nil
		}
		if to, ok := t.Paths[p]; ok {
			return to, nil
		}
		return p, nil
	}
	var err error
	if d.OS != nil {
		if d.OS.Kernel, err = move(d.OS.Kernel); err != nil {
			return "", err
		}
		if d.OS.Initrd, err = move(d.OS.Initrd); err != nil {
			return "", err
		}
	}
	if d.Devices == nil {
		return "", fmt.Errorf("the domain has no devices")
	}
	for i := range d.Devices.Disks {
		disk := &d.Devices.Disks[i]
		if disk.Source == nil || disk.Source.File == nil {
			continue
		}
		to, ok := t.Paths[disk.Source.File.File]
		if !ok {
			continue
		}
		disk.Source.File.File = to
		if disk.ReadOnly == nil {
			// The copy flattens the chain into the target file.
			disk.BackingStore = &libvirtxml.DomainDiskBackingStore{}
		}
	}
	for i := range d.Devices.Serials {
		s := &d.Devices.Serials[i]
		if s.Log != nil {
			s.Log.File, _ = move(s.Log.File)
		}
	}
	for i := range d.Devices.Consoles {
		s := &d.Devices.Consoles[i]
		if s.Log != nil {
			s.Log.File, _ = move(s.Log.File)
		}
	}
	for i := range d.Devices.Interfaces {
		nic := &d.Devices.Interfaces[i]
		if nic.MAC == nil {
			continue
		}
		to, ok := t.NICs[strings.ToLower(nic.MAC.Address)]
		if !ok {
			continue
		}
		if nic.Source != nil && nic.Source.Bridge != nil && to.Bridge != "" {
			nic.Source.Bridge.Bridge = to.Bridge
		}
		if to.Target != "" {
			nic.Target = &libvirtxml.DomainInterfaceTarget{Dev: to.Target}
		}
	}
	return d.Marshal()
}
