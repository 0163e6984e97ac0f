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
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ImageFormat is the format qemu-img detects for path (raw, qcow2, ...).
func ImageFormat(ctx context.Context, path string) (string, error) {
	out, err := run(ctx, "qemu-img", "info", "--output=json", "-U", path)
	if err != nil {
		return "", err
	}
	var info struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	if info.Format == "" {
		return "", fmt.Errorf("qemu-img info %s: no format", path)
	}
	return info.Format, nil
}

// Overlay creates a qcow2 file at path backed by base, unless it exists: the
// overlay holds the guest's writes and must survive re-provisioning.
func Overlay(ctx context.Context, base, path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	format, err := ImageFormat(ctx, base)
	if err != nil {
		return err
	}
	return atomicCreate(path, func(tmp string) error {
		_, err := run(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", format, "-b", base, tmp)
		return err
	})
}

// Blank creates an empty qcow2 disk of size bytes at path, unless it exists.
func Blank(ctx context.Context, path string, size int64) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if size <= 0 {
		return fmt.Errorf("blank disk %s: size must be positive", path)
	}
	return atomicCreate(path, func(tmp string) error {
		_, err := run(ctx, "qemu-img", "create", "-q", "-f", "qcow2", tmp, strconv.FormatInt(size, 10))
		return err
	})
}

// atomicCreate makes path appear only once create has fully written it.
func atomicCreate(path string, create func(tmp string) error) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	_ = os.Remove(tmp)
	if err := create(tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}

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
