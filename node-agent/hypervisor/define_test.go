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
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vessel-vm/vessel/node-agent/internal/needs"
)

// TestRedefineKeepsTheDomainName: a domain defined under another name (by
// an agent older than the UID in domain names) keeps it when Vessel
// redefines it; libvirt refuses a define that renames a UUID.
func TestRedefineKeepsTheDomainName(t *testing.T) {
	host := needs.Libvirt(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel) // after the undefine below
	l := NewLibvirt(host.Socket())
	go l.Run(ctx)
	if err := l.WaitConnected(ctx); err != nil {
		t.Fatalf("connect to libvirtd: %v", err)
	}
	cfg := testConfig()
	cfg.Owner.Namespace = "vessel-test"
	cfg.Owner.UID = uuid.NewString()
	cfg.Owner.Name = "redefine-" + cfg.Owner.UID[:6]
	const oldName = "vessel-test_redefine-old-name"
	x, err := domainXML(cfg, oldName)
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DomainDefineXML(x); err != nil {
		t.Fatalf("define under the old name: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Undefine(ctx, cfg.Owner.UID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})

	cfg.MemoryKiB *= 2
	cfg.SpecHash = "changed"
	if err := l.Define(ctx, cfg); err != nil {
		t.Fatalf("redefine: %v", err)
	}
	d, err := l.Lookup(ctx, cfg.Owner.UID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != oldName || d.SpecHash != "changed" {
		t.Errorf("after the redefinition: name %q, spec hash %q; want %q, changed", d.Name, d.SpecHash, oldName)
	}

	// A new domain gets the name with the UID.
	if err := l.Undefine(ctx, cfg.Owner.UID); err != nil {
		t.Fatal(err)
	}
	if err := l.Define(ctx, cfg); err != nil {
		t.Fatalf("define: %v", err)
	}
	if d, err := l.Lookup(ctx, cfg.Owner.UID); err != nil || d.Name != DomainName(cfg.Owner.Namespace, cfg.Owner.Name, cfg.Owner.UID) {
		t.Errorf("new domain: %+v, %v; want named %s", d, err, DomainName(cfg.Owner.Namespace, cfg.Owner.Name, cfg.Owner.UID))
	}
}
