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
	"strings"
	"testing"
	"time"
)

// What the vessel-apiserver's refusal to migrate a VM with snapshots
// rests on: this machine's libvirt refuses to migrate a domain with
// snapshot metadata before it contacts the target at all. The target
// here is the same libvirtd, which libvirt refuses too, later and for
// another reason: once the snapshot is gone, that is the error.
func TestLibvirtDoesNotMigrateADomainWithSnapshots(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	l, socket, _, _, src := runningSource(ctx, t)
	uid := src.Owner.UID
	if _, err := l.CreateSnapshot(ctx, uid, SnapshotSpec{Name: "before-move"}); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	xml, err := l.MigratableXML(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	migrate := func() error {
		return l.Migrate(ctx, uid, Migration{
			DconnURI:      "qemu+unix:///system?socket=" + socket,
			MigrateURI:    "tcp://127.0.0.1:1",
			DisksURI:      "tcp://127.0.0.1:1",
			ListenAddress: "127.0.0.1",
			DestXML:       xml,
		})
	}
	err = migrate()
	if err == nil || !strings.Contains(err.Error(), "cannot migrate domain with 1 snapshots") {
		t.Fatalf("migrating a domain with a snapshot: %v; want libvirt's refusal for its snapshots", err)
	}
	t.Logf("with a snapshot: %v", err)

	if err := l.DeleteSnapshot(ctx, uid, "before-move"); err != nil {
		t.Fatal(err)
	}
	err = migrate()
	if err == nil || strings.Contains(err.Error(), "snapshots") {
		t.Fatalf("migrating the domain without its snapshot to its own libvirtd: %v; want a refusal for another reason", err)
	}
	t.Logf("without: %v", err)
	if d, err := l.Lookup(ctx, uid); err != nil || d.State != StateRunning {
		t.Fatalf("the domain after both refusals: %+v, %v; want it running", d, err)
	}
}
