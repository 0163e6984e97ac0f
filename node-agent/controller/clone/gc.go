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
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/cloneimage"
	"github.com/vessel-vm/vessel/node-agent/disks"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// collectImages removes what no one needs of the clone images on this
// node. A snapshot's image stays as long as the snapshot; a VM's image
// captured for one clone, until that clone is done. After that, the
// memory goes at once and the frozen disks stay until no VM's overlay is
// backed by them any more: deleting a snapshot keeps the data its clones
// run on until the last of them is deleted.
func (c *Controller) collectImages(ctx context.Context) error {
	c.gcMu.Lock()
	defer c.gcMu.Unlock()
	root := filepath.Join(c.cfg.StateDir, cloneimage.Subdir)
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list clone images: %w", err)
	}
	backing, err := disks.BackingFilesUnder(filepath.Join(c.cfg.StateDir, "vms"))
	if err != nil {
		return fmt.Errorf("list overlays' backing files: %w", err)
	}
	live, err := c.ownersAlive()
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		snapUID, cloneUID := cloneimage.Owner(dir)
		if (snapUID == "" && cloneUID == "") || live[snapUID+cloneUID] {
			continue
		}
		if imageInUse(dir, backing) {
			if err := os.Remove(filepath.Join(dir, "memory.save")); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		klog.FromContext(ctx).V(2).Info("Removed clone image", "dir", dir)
	}
	return errors.Join(errs...)
}

// ownersAlive are the UIDs of the snapshots that exist (and are not being
// deleted) and of the clones not done yet.
func (c *Controller) ownersAlive() (map[string]bool, error) {
	live := map[string]bool{}
	snaps, err := c.snaps.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	for _, s := range snaps {
		if s.DeletionTimestamp == nil {
			live[string(s.UID)] = true
		}
	}
	clones, err := c.clones.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	for _, cl := range clones {
		if cl.Status.Phase != v1alpha1.CloneSucceeded && cl.Status.Phase != v1alpha1.CloneFailed {
			live[string(cl.UID)] = true
		}
	}
	return live, nil
}

// imageInUse says an overlay is backed by one of the image's frozen disks.
func imageInUse(dir string, backing map[string]bool) bool {
	img, err := hypervisor.ReadCloneImage(dir)
	if err != nil {
		// A capture that never finished: nothing can be backed by it.
		return false
	}
	for _, d := range img.Disks {
		if backing[d.Path] {
			return true
		}
	}
	return false
}
