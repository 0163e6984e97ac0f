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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"k8s.io/klog/v2"
)

// Limits on `qemu-img info` of an untrusted file: a crafted image must not
// hang the agent or eat the host's memory. Variables so tests can lower them.
var (
	inspectTimeout    = 30 * time.Second
	inspectCPUSeconds = 10
	inspectMaxMemory  = 1 << 30 // address space, bytes
)

// InspectImage checks that the file at path is a disk of the declared format
// that QEMU can open without reading any other file:
//
//   - raw: the file must not start like any image format QEMU knows
//     (qcow2, vmdk, ...), so no tool that probes formats could ever take it
//     for one;
//   - qcow2: the header (parsed here, before any QEMU tool opens the file)
//     must name no backing file and no external data file, must not be
//     encrypted, and must not make a disk larger than maxVirtualSize bytes
//     (0: no limit; a few KiB of qcow2 can claim exabytes, which the guest
//     would then fill on the host's disk), and `qemu-img info -f qcow2`, run
//     under CPU, memory and time limits, must agree.
//
// Errors wrap ErrFormatMismatch, ErrBackingFile, ErrDataFile, ErrTooLarge or
// ErrInvalidImage, and never quote the file's content.
func InspectImage(ctx context.Context, path string, format Format, maxVirtualSize int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("inspect image: %w", err)
	}
	defer f.Close()
	switch format {
	case Raw:
		found, err := detectFormat(f)
		if err != nil {
			return fmt.Errorf("inspect image: %w", err)
		}
		if found != "" {
			return fmt.Errorf("%w: declared raw, but it is a %s image: %s", ErrFormatMismatch, found, fixFormatHint(found))
		}
		return nil
	case QCOW2:
		h, err := readQCOW2Header(f)
		if errors.Is(err, ErrFormatMismatch) {
			found, derr := detectFormat(f)
			if derr != nil {
				return fmt.Errorf("inspect image: %w", derr)
			}
			if found == "" {
				found = "raw"
			}
			return fmt.Errorf("%w: declared qcow2, but it is a %s image: %s", ErrFormatMismatch, found, fixFormatHint(found))
		}
		if err != nil {
			return err
		}
		if err := h.check(); err != nil {
			return err
		}
		if maxVirtualSize > 0 && h.virtualSize > uint64(maxVirtualSize) {
			return fmt.Errorf("%w: the qcow2 image makes a disk of %s, more than the %s this hypervisor allows (--disk-max-virtual-size)",
				ErrTooLarge, formatBytes(h.virtualSize), formatBytes(uint64(maxVirtualSize)))
		}
		return qemuImgAgrees(ctx, path)
	}
	return fmt.Errorf("inspect image: %w", fmt.Errorf("unknown format %q", format))
}

// fixFormatHint says what the user can do about a format mismatch.
func fixFormatHint(found string) string {
	switch found {
	case "raw":
		return "set format: raw"
	case "qcow2":
		return "set format: qcow2"
	}
	return "only raw and qcow2 images are accepted; convert it (qemu-img convert -O qcow2)"
}

// check refuses what a self-contained qcow2 disk does not have.
func (h qcow2Header) check() error {
	switch {
	case h.hasBacking:
		return fmt.Errorf("%w: the qcow2 image names a backing file, which QEMU would open on the host; images must be self-contained (qemu-img convert -O qcow2 flattens one)", ErrBackingFile)
	case h.dataFile:
		return fmt.Errorf("%w: the qcow2 image keeps its data in an external file, which QEMU would open on the host; images must be self-contained", ErrDataFile)
	case h.encrypted:
		return fmt.Errorf("%w: encrypted qcow2 images are not supported", ErrInvalidImage)
	case h.corrupt:
		return fmt.Errorf("%w: the qcow2 image is marked corrupt", ErrInvalidImage)
	}
	return nil
}

// qemuImgInfo is the part of `qemu-img info --output=json` checked here.
type qemuImgInfo struct {
	Format          string `json:"format"`
	BackingFilename string `json:"backing-filename"`
	Encrypted       bool   `json:"encrypted"`
	FormatSpecific  struct {
		Data struct {
			DataFile string `json:"data-file"`
			Corrupt  bool   `json:"corrupt"`
		} `json:"data"`
	} `json:"format-specific"`
}

// qemuImgAgrees runs `qemu-img info -f qcow2` on a file whose header was
// already checked, under limits, as a second opinion on what QEMU will see.
func qemuImgAgrees(ctx context.Context, path string) error {
	out, err := runLimited(ctx, "qemu-img", "info", "-f", string(QCOW2), "--output=json", "-U", path)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("inspect image: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("%w: qemu-img cannot read it as qcow2 (%v)", ErrInvalidImage, err)
	}
	var info qemuImgInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return fmt.Errorf("%w: qemu-img info output: %v", ErrInvalidImage, err)
	}
	h := qcow2Header{
		hasBacking: info.BackingFilename != "",
		dataFile:   info.FormatSpecific.Data.DataFile != "",
		encrypted:  info.Encrypted,
		corrupt:    info.FormatSpecific.Data.Corrupt,
	}
	if info.Format != string(QCOW2) {
		return fmt.Errorf("%w: qemu-img reads it as %q", ErrFormatMismatch, info.Format)
	}
	return h.check()
}

// runLimited runs a QEMU tool on an untrusted file with bounded CPU time,
// address space and wall-clock time. Its stderr may quote the file, so it is
// logged for the operator (at V(2)) but kept out of the returned error.
func runLimited(ctx context.Context, name string, args ...string) ([]byte, error) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		return nil, fmt.Errorf("prlimit (util-linux) is needed to run %s under limits: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, inspectTimeout)
	defer cancel()
	full := append([]string{
		"--cpu=" + strconv.Itoa(inspectCPUSeconds),
		"--as=" + strconv.Itoa(inspectMaxMemory),
		"--core=0",
		"--", name,
	}, args...)
	cmd := exec.CommandContext(ctx, prlimit, full...)
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		klog.FromContext(ctx).V(2).Info("Image inspection failed", "tool", name, "err", err, "stderr", stderr.String())
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s took longer than %v", name, inspectTimeout)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return stdout.Bytes(), nil
}

// FetchImage fetches an image for a disk and checks it against the declared
// format (see InspectImage). The cache keeps the file even when it fails:
// the same bytes may be declared correctly by another VM.
func (c *Cache) FetchImage(ctx context.Context, url, sum string, format Format, progress Progress) (string, error) {
	path, err := c.Fetch(ctx, url, sum, progress)
	if err != nil {
		return "", err
	}
	if err := InspectImage(ctx, path, format, c.cfg.MaxVirtualSize); err != nil {
		return "", fmt.Errorf("image %s: %w", redact(url), err)
	}
	return path, nil
}

// Disk confines a hostPath disk (see Confine) and, when it is declared
// qcow2, inspects it. A raw disk is not inspected: QEMU is told it is raw,
// so whatever its guest writes into it, QEMU never reads it as anything else.
func (h HostPaths) Disk(ctx context.Context, path, namespace string, format Format, writable bool) (string, error) {
	if _, err := ParseFormat(string(format)); err != nil {
		return "", fmt.Errorf("host path %q: %w", path, err)
	}
	resolved, err := h.Confine(path, namespace, writable)
	if err != nil {
		return "", err
	}
	if format == QCOW2 {
		if err := InspectImage(ctx, resolved, format, h.MaxVirtualSize); err != nil {
			return "", fmt.Errorf("host path %q: %w", path, err)
		}
	}
	return resolved, nil
}

// formatBytes writes a size the way a spec would (64Gi), or in bytes when
// it is no whole number of KiB.
func formatBytes(n uint64) string {
	units := []string{"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
	i := 0
	for n >= 1024 && n%1024 == 0 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%d%s", n, units[i])
}
