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

package disks

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestSeed(t *testing.T) {
	requireTool(t, "genisoimage")
	requireTool(t, "isoinfo")
	path := filepath.Join(t.TempDir(), "seed.iso")
	cfg := SeedConfig{InstanceID: "uid-123", LocalHostname: "web", UserData: "#!/bin/sh\necho hi\n", NetworkData: "version: 2\n"}
	if err := Seed(context.Background(), path, cfg); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("isoinfo", "-d", "-i", path).Output()
	if err != nil || !strings.Contains(string(out), "Volume id: cidata") {
		t.Fatalf("volume id: %s %v", out, err)
	}
	for file, want := range map[string]string{"user-data": cfg.UserData, "meta-data": "instance-id: uid-123\nlocal-hostname: web\n", "network-config": cfg.NetworkData} {
		got, err := exec.Command("isoinfo", "-R", "-i", path, "-x", "/"+file).Output()
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", file, got, err, want)
		}
	}
	// User data may hold secrets: the seed is readable by root only.
	if m := mode(t, path); m != 0o600 {
		t.Errorf("seed mode %v, want 0600", m)
	}
}

func TestMetaDataQuotes(t *testing.T) {
	md := SeedConfig{InstanceID: "i-1", LocalHostname: "a: b"}.MetaData()
	if !strings.Contains(md, `local-hostname: "a: b"`) {
		t.Errorf("meta-data = %q", md)
	}
}
