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
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SeedConfig is the content of a NoCloud seed.
type SeedConfig struct {
	InstanceID    string // the VM UID: cloud-init runs once per instance
	LocalHostname string // the VM name
	UserData      string
	NetworkData   string
}

// MetaData is the seed's meta-data file.
func (s SeedConfig) MetaData() string {
	return fmt.Sprintf("instance-id: %s\nlocal-hostname: %s\n", yamlScalar(s.InstanceID), yamlScalar(s.LocalHostname))
}

// yamlScalar quotes v when plain YAML would misread it.
func yamlScalar(v string) string {
	if v != "" && !strings.ContainsAny(v, ":#{}[]&*!|>'\"%@`,\n") && strings.TrimSpace(v) == v {
		return v
	}
	return fmt.Sprintf("%q", v)
}

// Seed writes a NoCloud seed ISO (volume label cidata, Joliet + Rock Ridge)
// to path, replacing any previous one atomically.
func Seed(ctx context.Context, path string, cfg SeedConfig) error {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".seed-")
	if err != nil {
		return fmt.Errorf("seed %s: %w", path, err)
	}
	defer os.RemoveAll(dir)
	files := []string{"user-data", "meta-data"}
	contents := map[string]string{"user-data": cfg.UserData, "meta-data": cfg.MetaData()}
	if cfg.NetworkData != "" {
		files = append(files, "network-config")
		contents["network-config"] = cfg.NetworkData
	}
	args := []string{"-quiet", "-output", "", "-volid", "cidata", "-joliet", "-rock"}
	for _, f := range files {
		p := filepath.Join(dir, f)
		if err := os.WriteFile(p, []byte(contents[f]), 0o600); err != nil {
			return fmt.Errorf("seed %s: %w", path, err)
		}
		args = append(args, p)
	}
	return atomicCreate(path, func(tmp string) error {
		args[2] = tmp
		_, err := run(ctx, "genisoimage", args...)
		return err
	})
}
