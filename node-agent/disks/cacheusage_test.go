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
	"os"
	"path/filepath"
	"testing"
)

func TestCacheUsageCountsCompleteImagesOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "images")
	c := NewCache(context.Background(), CacheConfig{Dir: dir})
	if b, n, err := c.Usage(); err != nil || b != 0 || n != 0 {
		t.Fatalf("absent cache: Usage() = %d, %d, %v; want 0, 0, nil", b, n, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]int{
		"sha256-aaaa":           1000,
		"sha256-bbbb":           24,
		".download-sha256-cccc": 5000, // in progress
		"unrelated":             7,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, n, err := c.Usage()
	if err != nil || b != 1024 || n != 2 {
		t.Errorf("Usage() = %d bytes, %d images, %v; want 1024, 2, nil", b, n, err)
	}
}
