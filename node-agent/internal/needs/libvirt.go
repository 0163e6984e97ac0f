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

package needs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vessel-vm/vessel/launcher/libvirtd"
)

// The tests' libvirtd is one per test binary (a package's tests share it,
// as they shared the machine's libvirtd before: unique hypervisor names
// and UID-stamped domains keep them apart), started on first use in a
// mount and network namespace of its own, the way `make up` runs its
// hypervisors. With the machine's QEMU capabilities seed it is ready in
// about 1.5 s; Main removes it, and with it whatever guests are left.
var (
	libvirtOnce    sync.Once
	libvirtHost    libvirtd.Host
	libvirtDaemons *libvirtd.Daemons
	libvirtErr     error
)

// hostDirPattern names the directories of the tests' libvirtds, short for
// the socket paths under them; owner.pid in each names the test binary.
const hostDirPattern = "vessel-lt-*"

func testLibvirtd() (libvirtd.Host, error) {
	libvirtOnce.Do(func() {
		removeAbandoned()
		dir, err := os.MkdirTemp("", strings.TrimSuffix(hostDirPattern, "*"))
		if err != nil {
			libvirtErr = err
			return
		}
		if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			libvirtErr = err
			return
		}
		libvirtHost = libvirtd.Host{
			Name:             "test-" + filepath.Base(dir),
			Dir:              dir,
			Netns:            "vessel-test-" + strings.TrimPrefix(filepath.Base(dir), strings.TrimSuffix(hostDirPattern, "*")),
			UUID:             uuid.NewString(),
			CapabilitiesSeed: libvirtd.DefaultCapabilitiesSeed,
		}
		// As the launcher runs libvirtd: under vessel-reaper, so a
		// destroyed domain's QEMU is gone at once (see Host.Reaper).
		if libvirtHost.Reaper, libvirtErr = buildReaper(dir); libvirtErr != nil {
			_ = os.RemoveAll(dir)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		libvirtDaemons, libvirtErr = libvirtd.Start(ctx, libvirtHost)
		if libvirtErr != nil {
			_ = removeHost(libvirtHost)
		}
	})
	return libvirtHost, libvirtErr
}

// buildReaper builds cmd/vessel-reaper into dir.
func buildReaper(dir string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("build vessel-reaper: no source path")
	}
	out := filepath.Join(dir, "vessel-reaper")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/vessel-reaper")
	// node-agent/internal/needs/libvirt.go -> the repository root.
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..", "..")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build vessel-reaper: %v\n%s", err, b)
	}
	return out, nil
}

// Main runs a package's tests, then removes the tests' libvirtd if they
// started one. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if libvirtDaemons != nil {
		libvirtDaemons.Stop()
		if err := removeHost(libvirtHost); err != nil {
			fmt.Fprintf(os.Stderr, "needs: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func removeHost(h libvirtd.Host) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.Remove(ctx); err != nil {
		return err
	}
	return os.RemoveAll(h.Dir)
}

// removeAbandoned removes the libvirtds of test binaries that ended
// without Main (a timeout's panic, a kill), guests and all.
func removeAbandoned() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), hostDirPattern))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil {
			continue // still running (or not ours to judge)
		}
		base := filepath.Base(dir)
		_ = removeHost(libvirtd.Host{
			Name:  "test-" + base,
			Dir:   dir,
			Netns: "vessel-test-" + strings.TrimPrefix(base, strings.TrimSuffix(hostDirPattern, "*")),
		})
	}
}

// missingLibvirt says what a private libvirtd lacks here, or "".
func missingLibvirt() string {
	if os.Geteuid() != 0 {
		return "a libvirtd of the tests' own needs root (namespaces, mounts)"
	}
	for _, p := range []string{"libvirtd", "virtlogd", "qemu-system-x86_64", "nsenter", "unshare", "ip", "findmnt"} {
		if _, err := exec.LookPath(p); err != nil {
			if _, err := os.Stat(filepath.Join("/usr/sbin", p)); err != nil {
				return fmt.Sprintf("%s is not installed: run hack/install-libvirt.sh", p)
			}
		}
	}
	return ""
}
