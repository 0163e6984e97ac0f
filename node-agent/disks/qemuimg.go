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
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Overlay creates a qcow2 file at path backed by base, whose format is
// declared (never probed), unless it exists: the overlay holds the guest's
// writes and must survive re-provisioning. An existing overlay must have
// been made from the same base and format; if the disk's image changed
// since, the guest's writes would land on another image's blocks, so that
// is refused. base must have passed InspectImage with format.
func Overlay(ctx context.Context, base string, format Format, path string) error {
	if _, err := ParseFormat(string(format)); err != nil {
		return fmt.Errorf("overlay %s: %w", path, err)
	}
	if _, err := os.Stat(path); err == nil {
		backing, backingFormat, err := overlayBacking(path)
		if err != nil {
			return fmt.Errorf("overlay %s: %w", path, err)
		}
		if backing != base || backingFormat != string(format) {
			return fmt.Errorf("%w: the disk was created from another image or format (%s as %s); delete and recreate the VM to use the new one",
				ErrOverlayMismatch, filepath.Base(backing), backingFormat)
		}
		return os.Chmod(path, 0o600)
	}
	return atomicCreate(path, func(tmp string) error {
		_, err := run(ctx, "qemu-img", "create", "-q", "-f", string(QCOW2), "-F", string(format), "-b", base, tmp)
		return err
	})
}

// CloneOverlay creates, or replaces, a clone's qcow2 overlay at path on
// base, a frozen copy of the source's disk in a declared format, of size
// bytes. qemu-img is told the size (-u), so it never opens base or its
// backing chain: the domain XML declares the whole chain.
func CloneOverlay(ctx context.Context, base string, format Format, path string, size int64) error {
	if _, err := ParseFormat(string(format)); err != nil {
		return fmt.Errorf("clone overlay %s: %w", path, err)
	}
	if size <= 0 {
		return fmt.Errorf("clone overlay %s: size must be positive", path)
	}
	return atomicCreate(path, func(tmp string) error {
		_, err := run(ctx, "qemu-img", "create", "-q", "-f", string(QCOW2), "-F", string(format), "-b", base, "-u", tmp, strconv.FormatInt(size, 10))
		return err
	})
}

// overlayBacking reads the backing file and its format from one of Vessel's
// own overlays.
func overlayBacking(path string) (backing, format string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	h, err := readQCOW2Header(f)
	if err != nil {
		return "", "", err
	}
	return h.backingFile, h.backingFormat, nil
}

// Blank creates an empty qcow2 disk of size bytes at path, unless it exists.
func Blank(ctx context.Context, path string, size int64) error {
	if _, err := os.Stat(path); err == nil {
		return os.Chmod(path, 0o600)
	}
	if size <= 0 {
		return fmt.Errorf("blank disk %s: size must be positive", path)
	}
	return atomicCreate(path, func(tmp string) error {
		_, err := run(ctx, "qemu-img", "create", "-q", "-f", string(QCOW2), tmp, strconv.FormatInt(size, 10))
		return err
	})
}

// PrivateDir creates dir (and its parents) readable by root only, and
// narrows an existing one: a VM's directory holds its disks, seed (user
// data may carry secrets) and console log.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}

// atomicCreate makes path appear, readable by root only, once create has
// fully written it.
func atomicCreate(path string, create func(tmp string) error) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	_ = os.Remove(tmp)
	if err := create(tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}

// run runs a tool on trusted input (Vessel's own files, inspected images).
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}
