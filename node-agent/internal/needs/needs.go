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

// Package needs is how node agent tests ask for the real parts they use
// (a libvirtd of their own, the test guest, host tools). Without them a test is skipped,
// unless VESSEL_E2E is set: the e2e step must have them, so there their
// absence fails the test instead of passing it silently. Tests that need
// libvirtd or boot guests are skipped in -short mode, so
// `go test -short ./node-agent/...` runs every pure test and touches no
// libvirtd.
package needs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vessel-vm/vessel/launcher/libvirtd"
)

// E2E says the environment promises every real part (VESSEL_E2E is set).
func E2E() bool { return os.Getenv("VESSEL_E2E") != "" }

// missing skips tb, or fails it under VESSEL_E2E.
func missing(tb testing.TB, what string) {
	tb.Helper()
	if E2E() {
		tb.Fatalf("VESSEL_E2E is set but %s", what)
	}
	tb.Skipf("%s; set VESSEL_E2E=1 to make this a failure", what)
}

// Libvirt skips tb in -short mode, and without what a libvirtd of the
// tests' own needs (root, libvirt and QEMU: hack/install-libvirt.sh). It
// returns that libvirtd, which the test binary starts on first use (see
// libvirt.go): the tests never touch the machine's libvirtd or its guests.
func Libvirt(tb testing.TB) libvirtd.Host {
	tb.Helper()
	if testing.Short() {
		tb.Skip("uses libvirtd; skipped in -short mode")
	}
	if reason := missingLibvirt(); reason != "" {
		missing(tb, reason)
	}
	host, err := testLibvirtd()
	if err != nil {
		tb.Fatalf("start the tests' libvirtd: %v", err)
	}
	return host
}

// Tool skips tb without the named program on $PATH.
func Tool(tb testing.TB, name string) {
	tb.Helper()
	if !HasTool(tb, name) {
		tb.SkipNow()
	}
}

// HasTool says whether the named program is on $PATH, for a check within
// a test that can do without it; under VESSEL_E2E its absence fails tb.
func HasTool(tb testing.TB, name string) bool {
	tb.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if E2E() {
			tb.Fatalf("VESSEL_E2E is set but %s is not installed (hack/install-libvirt.sh installs it)", name)
		}
		tb.Logf("%s not installed (hack/install-libvirt.sh installs it): skipping what needs it", name)
		return false
	}
	return true
}

// guestFiles are the test guest's files, as hack/build-guest.sh writes
// them.
var guestFiles = []string{"vmlinuz", "initrd.img", "disk.img"}

// Guest returns the directory of the test guest: $VESSEL_GUEST_DIR, the
// repository's _output/guest (hack/build-guest.sh), or where `make deps`
// installs it. Without one, tb is skipped.
func Guest(tb testing.TB) string {
	tb.Helper()
	var dirs []string
	if d := os.Getenv("VESSEL_GUEST_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		// node-agent/internal/needs/needs.go -> the repository root.
		dirs = append(dirs, filepath.Join(filepath.Dir(file), "..", "..", "..", "_output", "guest"))
	}
	dirs = append(dirs, "/var/lib/vessel/images/vessel-guest")
	for _, d := range dirs {
		if hasAll(d, guestFiles) {
			abs, err := filepath.Abs(d)
			if err != nil {
				tb.Fatal(err)
			}
			return abs
		}
	}
	missing(tb, fmt.Sprintf("the test guest is in none of %v: run hack/build-guest.sh", dirs))
	return ""
}

func hasAll(dir string, files []string) bool {
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}
