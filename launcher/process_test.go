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
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startSleeper starts a shell that runs until killed and whose command line
// names a file in the state directory, like every real component's.
func startSleeper(t *testing.T, l layout, name string) *process {
	t.Helper()
	if err := l.create(); err != nil {
		t.Fatal(err)
	}
	p, err := startProcess(l, name, "/bin/sh",
		[]string{"-c", "echo started; while :; do sleep 0.1; done", filepath.Join(l.root, "marker")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return p
}

func TestDownStopsDetachedProcesses(t *testing.T) {
	l, err := newLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := startSleeper(t, l, "kube-apiserver")
	if pid, ok := ownedPID(l.pidFile("kube-apiserver"), l.root); !ok || pid != p.pid {
		t.Fatalf("ownedPID = %d, %v; want %d, true", pid, ok, p.pid)
	}
	if err := checkNotRunning(l); err == nil {
		t.Error("checkNotRunning accepted a state directory with a live process")
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(tail(p.logFile, 5), "started"); {
		if time.Now().After(deadline) {
			t.Fatalf("log %s does not hold the process output", p.logFile)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := Down(l.root); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("process still running after Down")
	}
	if _, err := os.Stat(p.pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PID file left behind: %v", err)
	}
}

// A PID file outlives its process; after a reboot its PID may be anyone's.
func TestDownLeavesForeignProcessesAlone(t *testing.T) {
	l, err := newLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.create(); err != nil {
		t.Fatal(err)
	}
	writeStale := func() {
		// This test's own PID: its command line does not name the state
		// directory, so it must survive.
		writeFile(t, l.pidFile("etcd"), strconv.Itoa(os.Getpid()))
		// A PID that does not exist at all.
		writeFile(t, l.pidFile("vessel-agent"), "2147483646")
		// Not a PID.
		writeFile(t, l.pidFile("kube-apiserver"), "garbage")
	}

	writeStale()
	if err := checkNotRunning(l); err != nil {
		t.Fatalf("stale PID files counted as running: %v", err)
	}
	writeStale()
	if err := Down(l.root); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(l.runDir(), "*.pid")); len(left) > 0 {
		t.Errorf("stale PID files left: %v", left)
	}
}

func TestPIDFilesStopOrder(t *testing.T) {
	l, err := newLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.create(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, l.pidFile("vessel-agent"), "1")
	var got []string
	for _, f := range pidFilesInStopOrder(l) {
		got = append(got, strings.TrimSuffix(filepath.Base(f), ".pid"))
	}
	// The supervisor first, or it would restart what Down stops next.
	want := "supervisor vessel-agent vessel-apiserver kube-controller-manager kube-apiserver etcd"
	if strings.Join(got, " ") != want {
		t.Errorf("stop order = %v, want %s", got, want)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A libvirtd under vessel-reaper counts as libvirtd, and only as that.
func TestRunsBinaryUnderTheReaper(t *testing.T) {
	dir := t.TempDir()
	reaper := filepath.Join(dir, reaperName)
	if err := os.Symlink("/bin/sh", reaper); err != nil {
		t.Fatal(err)
	}
	l := testLayout(t)
	if err := l.create(); err != nil {
		t.Fatal(err)
	}
	p, err := startProcess(l, "libvirtd@hv", reaper,
		[]string{"-c", "while :; do sleep 0.1; done", "/usr/sbin/libvirtd", "--config=" + filepath.Join(l.root, "libvirtd.conf")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	sh := startSleeper(t, l, "other")
	for _, c := range []struct {
		pid    int
		binary string
		want   bool
	}{
		{p.pid, "/usr/sbin/libvirtd", true},
		{p.pid, "virtlogd", false},
		{sh.pid, "/bin/sh", true},
		{sh.pid, "/usr/sbin/libvirtd", false},
	} {
		if got := runsBinary(c.pid, c.binary); got != c.want {
			t.Errorf("runsBinary(%s, %s) = %v, want %v", cmdline(c.pid), c.binary, got, c.want)
		}
	}
}
