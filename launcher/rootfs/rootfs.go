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

// Package rootfs runs a program from an OCI image's root filesystem on a
// machine without a container runtime, the way one would run it: the image
// is unpacked by umoci (Debian package; an implementation independent of
// the one that built the image), and its entrypoint runs chrooted into the
// root filesystem, as the image's user, in a private mount namespace that
// holds the mounts a pod would have (volumes, /proc, a minimal /dev) and
// can make the root filesystem read-only. The network namespace stays the
// host's: the program reaches loopback services as the local control plane
// needs.
//
// It needs root, util-linux's unshare and mount, and coreutils' chroot.
package rootfs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Bundle is an unpacked image: an OCI runtime bundle as umoci writes it.
type Bundle struct {
	// Dir holds config.json and rootfs/.
	Dir string
	// Rootfs is the root filesystem.
	Rootfs string
	// Process is what the image says to run.
	Process Process
}

// Process is the part of the bundle's runtime configuration (config.json)
// that comes from the image configuration.
type Process struct {
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Cwd  string   `json:"cwd"`
	User struct {
		UID uint32 `json:"uid"`
		GID uint32 `json:"gid"`
	} `json:"user"`
}

// Unpack unpacks the image tagged tag in the OCI layout at layoutDir into
// bundleDir, replacing what was there, and reads its configuration.
func Unpack(ctx context.Context, layoutDir, tag, bundleDir string) (*Bundle, error) {
	// Unpacked next to its place and moved there when complete, so that a
	// bundle that is there is whole.
	tmp := bundleDir + ".unpacking"
	for _, d := range []string{bundleDir, tmp} {
		if err := os.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("remove old bundle %s: %w", d, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(bundleDir), 0o700); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "umoci", "unpack", "--image", layoutDir+":"+tag, tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("umoci unpack %s:%s: %w: %s", layoutDir, tag, err, bytes.TrimSpace(out))
	}
	if err := os.Rename(tmp, bundleDir); err != nil {
		return nil, err
	}
	return Open(bundleDir)
}

// UnpackLayout unpacks the one image of the OCI layout at layoutDir into
// dir/<manifest digest>, or reuses that bundle when it is there already:
// a program may be running from it, and an image that changed gets a
// bundle of its own. Bundles of other digests under dir are removed.
func UnpackLayout(ctx context.Context, layoutDir, dir string) (*Bundle, error) {
	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	data, err := os.ReadFile(filepath.Join(layoutDir, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("read the OCI layout: %w", err)
	}
	if err := json.Unmarshal(data, &index); err != nil {
		return nil, fmt.Errorf("parse %s/index.json: %w", layoutDir, err)
	}
	if len(index.Manifests) != 1 {
		return nil, fmt.Errorf("%s holds %d images, want 1", layoutDir, len(index.Manifests))
	}
	m := index.Manifests[0]
	tag := m.Annotations["org.opencontainers.image.ref.name"]
	hex, ok := strings.CutPrefix(m.Digest, "sha256:")
	if !ok || tag == "" {
		return nil, fmt.Errorf("%s: the image has no tag or no sha256 digest", layoutDir)
	}
	bundleDir := filepath.Join(dir, hex)
	if b, err := Open(bundleDir); err == nil {
		return b, nil
	}
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if e.Name() != hex {
				if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
					return nil, fmt.Errorf("remove an old bundle: %w", err)
				}
			}
		}
	}
	return Unpack(ctx, layoutDir, tag, bundleDir)
}

// Open reads a bundle unpacked earlier.
func Open(bundleDir string) (*Bundle, error) {
	data, err := os.ReadFile(filepath.Join(bundleDir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read bundle configuration: %w", err)
	}
	var spec struct {
		Process Process `json:"process"`
		Root    struct {
			Path string `json:"path"`
		} `json:"root"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("parse %s/config.json: %w", bundleDir, err)
	}
	if len(spec.Process.Args) == 0 {
		return nil, fmt.Errorf("%s: the image has no entrypoint", bundleDir)
	}
	root := spec.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(bundleDir, root)
	}
	return &Bundle{Dir: bundleDir, Rootfs: root, Process: spec.Process}, nil
}

// Mount is a host file or directory bind-mounted into the root filesystem.
type Mount struct {
	// Source is on the host; Target is its absolute path in the image.
	Source, Target string
	ReadOnly       bool
}

// Options say how to run the entrypoint.
type Options struct {
	// Args follow the image's entrypoint and command (as a pod's args
	// replace only the command; Vessel's images have none).
	Args []string
	// Env is added to the image's environment.
	Env []string
	// Mounts are the volumes; their mount points are created in the root
	// filesystem first, as a runtime does.
	Mounts []Mount
	// ReadOnlyRootfs is a pod's securityContext.readOnlyRootFilesystem.
	ReadOnlyRootfs bool
	// AsRoot runs as root instead of the image's user.
	AsRoot bool
}

// mountScript runs in the new mount namespace, as root, before it becomes
// the program: $1 is the root filesystem, $2 the user, $3 "ro" or "rw", $4
// the host's chroot and $5 the host's PATH (the environment's is the
// program's), then SOURCE TARGET MODE triples up to "--", then the program
// and its arguments.
const mountScript = `set -eu
root=$1 user=$2 rootmode=$3 chroot=$4 image_path=${PATH:-}
PATH=$5
shift 5
mount --bind "$root" "$root"
mkdir -p "$root/proc" "$root/dev"
mount -t proc proc "$root/proc"
mount -t tmpfs -o nosuid,mode=0755 dev "$root/dev"
for d in null zero full random urandom tty; do
	: > "$root/dev/$d"
	mount --bind "/dev/$d" "$root/dev/$d"
done
mkdir -p "$root/dev/shm"
mount -t tmpfs -o nosuid,nodev shm "$root/dev/shm"
while [ "$1" != -- ]; do
	src=$1 dst=$root$2 mode=$3
	shift 3
	if [ -d "$src" ]; then
		mkdir -p "$dst"
	else
		mkdir -p "$(dirname "$dst")"
		[ -e "$dst" ] || : > "$dst"
	fi
	mount --bind "$src" "$dst"
	if [ "$mode" = ro ]; then mount -o remount,bind,ro "$dst"; fi
done
shift
if [ "$rootmode" = ro ]; then mount -o remount,bind,ro "$root"; fi
PATH=$image_path
export PATH
exec "$chroot" --userspec="$user" "$root" "$@"
`

// Command returns the command that runs the image's entrypoint with opts:
// Argv and Env.
func (b *Bundle) Command(ctx context.Context, opts Options) (*exec.Cmd, error) {
	argv, err := b.Argv(opts)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = b.Env(opts)
	return cmd, nil
}

// Argv is the command line that runs the image's entrypoint with opts. Its
// process ID stays the program's: unshare, the shell and chroot each exec
// the next, so the program's /proc/PID/cmdline is its own.
func (b *Bundle) Argv(opts Options) ([]string, error) {
	for _, m := range opts.Mounts {
		if !filepath.IsAbs(m.Target) || strings.Contains(m.Target, "..") {
			return nil, fmt.Errorf("mount target %q: want an absolute path without ..", m.Target)
		}
		if _, err := os.Stat(m.Source); err != nil {
			return nil, fmt.Errorf("mount source: %w", err)
		}
	}
	if b.Process.Cwd != "" && b.Process.Cwd != "/" {
		return nil, errors.New("images with a working directory other than / are not supported")
	}
	hostPath := os.Getenv("PATH") + ":/usr/sbin:/usr/bin:/sbin:/bin"
	var tools []string
	for _, tool := range []string{"unshare", "chroot"} {
		path, err := lookPath(tool, hostPath)
		if err != nil {
			return nil, fmt.Errorf("find %s (util-linux, coreutils): %w", tool, err)
		}
		tools = append(tools, path)
	}
	user := fmt.Sprintf("%d:%d", b.Process.User.UID, b.Process.User.GID)
	if opts.AsRoot {
		user = "0:0"
	}
	rootMode := "rw"
	if opts.ReadOnlyRootfs {
		rootMode = "ro"
	}
	argv := []string{tools[0], "--mount", "--propagation", "private", "--", "/bin/sh", "-c", mountScript, "sh",
		b.Rootfs, user, rootMode, tools[1], hostPath}
	for _, m := range opts.Mounts {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		argv = append(argv, m.Source, m.Target, mode)
	}
	argv = append(argv, "--")
	argv = append(argv, b.Process.Args...)
	return append(argv, opts.Args...), nil
}

// EnterArgv is Argv divided in two: enter sets up the mount namespace and
// the chroot and execs the rest, which is the image's program (its
// entrypoint) with its arguments. The process that runs therefore has the
// program's command line, as it would in a pod: a supervisor that
// recognizes processes by their command line sees the program.
func (b *Bundle) EnterArgv(opts Options) (enter []string, program string, args []string, err error) {
	if len(b.Process.Args) == 0 {
		return nil, "", nil, errors.New("the image has no entrypoint or command")
	}
	argv, err := b.Argv(opts)
	if err != nil {
		return nil, "", nil, err
	}
	i := len(argv) - len(opts.Args) - len(b.Process.Args)
	return argv[:i], argv[i], argv[i+1:], nil
}

// Env is the program's environment: the image's, then opts.Env.
func (b *Bundle) Env(opts Options) []string {
	return append(append([]string{}, b.Process.Env...), opts.Env...)
}

// lookPath finds a host tool in path, whatever the environment's PATH.
func lookPath(tool, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, tool)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// Owner returns the image's user and group IDs, for files the program
// must read (mounted secrets) or write.
func (b *Bundle) Owner() (uid, gid int) {
	return int(b.Process.User.UID), int(b.Process.User.GID)
}

// String names the bundle and its entrypoint, for logs.
func (b *Bundle) String() string {
	return b.Dir + " (" + strings.Join(b.Process.Args, " ") + ", user " +
		strconv.Itoa(int(b.Process.User.UID)) + ")"
}
