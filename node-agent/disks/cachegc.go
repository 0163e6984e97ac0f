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
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// recentlyUsed protects an image fetched moments ago: its VM may not be in
// the agent's view of VMs yet when the collector asks what is in use.
const recentlyUsed = 2 * time.Minute

// Collect shrinks the cache to its size bound, removing the least recently
// used images first and never one in use. It also removes partial downloads
// a crash left behind. It runs after every download; the agent may call it
// at other times too.
func (c *Cache) Collect() error {
	if c.cfg.InUse == nil {
		return nil
	}
	inUse, err := c.cfg.InUse()
	if err != nil {
		return fmt.Errorf("image cache: list images in use: %w", err)
	}
	backing, err := backingFilesUnder(c.cfg.OverlayDir)
	if err != nil {
		return fmt.Errorf("image cache: list overlays' backing files: %w", err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	entries, err := os.ReadDir(c.cfg.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	type image struct {
		path  string
		size  int64
		used  time.Time
		inUse bool
	}
	var images []image
	var total int64
	now := time.Now()
	var errs []error
	for _, e := range entries {
		name := e.Name()
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		path := filepath.Join(c.cfg.Dir, name)
		if strings.HasPrefix(name, ".download-") {
			// A live download writes all the time; one idle for longer than
			// any download may last is a crash's leftover.
			if now.Sub(info.ModTime()) > c.cfg.DownloadTimeout+time.Minute {
				if err := os.Remove(path); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		sum, ok := strings.CutPrefix(name, "sha256-")
		if !ok {
			continue
		}
		images = append(images, image{
			path:  path,
			size:  info.Size(),
			used:  info.ModTime(),
			inUse: inUse[sum] || backing[path] || now.Sub(info.ModTime()) < recentlyUsed,
		})
		total += info.Size()
	}
	sort.Slice(images, func(i, j int) bool { return images[i].used.Before(images[j].used) })
	for _, img := range images {
		if total <= c.cfg.MaxCacheSize {
			break
		}
		if img.inUse {
			continue
		}
		if err := os.Remove(img.path); err != nil {
			errs = append(errs, err)
			continue
		}
		total -= img.size
	}
	return errors.Join(errs...)
}

// collect is Collect after a download, logging what went wrong.
func (c *Cache) collect() {
	if err := c.Collect(); err != nil {
		c.logger().Error(err, "Image cache garbage collection failed")
	}
}

// BackingFilesUnder is backingFilesUnder for the clone controller: a clone
// image's frozen disks stay while an overlay is backed by them.
func BackingFilesUnder(dir string) (map[string]bool, error) { return backingFilesUnder(dir) }

// backingFilesUnder returns the backing files the qcow2 overlays in dir's
// subdirectories (one per VM) name. Those overlays are Vessel's own files,
// created with a cache image as backing file.
func backingFilesUnder(dir string) (map[string]bool, error) {
	out := map[string]bool{}
	if dir == "" {
		return out, nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "*", "*.qcow2"))
	if err != nil {
		return nil, err
	}
	for _, path := range files {
		backing, _, err := overlayBacking(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		if backing != "" {
			out[backing] = true
		}
	}
	return out, nil
}
