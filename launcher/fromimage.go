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

package launcher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vessel-vm/vessel/launcher/rootfs"
)

// vesselAPIServerCommand is how to run the vessel-apiserver with args: its
// binary, or, with VesselAPIServerImage, the image's entrypoint chrooted
// into its unpacked root filesystem (kept under the state directory per
// image digest), as a pod would run it with a read-only root. Then enter is
// the command that sets up the mount namespace and execs the entrypoint, so
// that the process is the entrypoint's by its command line, which is how a
// later supervisor recognizes and adopts it. The state directory is mounted
// at its own path, so that args name the same files inside; the server runs
// as root there, because the launcher's keys and etcd data are root's.
func (c *Cluster) vesselAPIServerCommand(ctx context.Context, args []string) (enter []string, binary string, _ []string, _ error) {
	if c.opts.VesselAPIServerImage == "" {
		return nil, c.opts.VesselAPIServerBinary, args, nil
	}
	bundle, err := rootfs.UnpackLayout(ctx, c.opts.VesselAPIServerImage, filepath.Join(c.layout.root, "images", vesselAPIServerName))
	if err != nil {
		return nil, "", nil, fmt.Errorf("unpack the vessel-apiserver image: %w", err)
	}
	mounts := []rootfs.Mount{{Source: c.layout.root, Target: c.layout.root}}
	if _, err := os.Stat(ImagesDir); err == nil {
		mounts = append(mounts, rootfs.Mount{Source: ImagesDir, Target: ImagesDir, ReadOnly: true})
	}
	enter, binary, args, err = bundle.EnterArgv(rootfs.Options{Args: args, Mounts: mounts, ReadOnlyRootfs: true, AsRoot: true})
	if err != nil {
		return nil, "", nil, fmt.Errorf("run the vessel-apiserver image %s: %w", c.opts.VesselAPIServerImage, err)
	}
	return enter, binary, args, nil
}
