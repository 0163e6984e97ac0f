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

package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary is vessel-reaper itself when this is set.
const asMain = "VESSEL_REAPER_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func reaper(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asMain+"=1")
	cmd.Stderr = os.Stderr
	return cmd
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatal(err)
	return -1
}

func TestExitsAsTheCommandDid(t *testing.T) {
	if got := exitCode(t, reaper("sh", "-c", "exit 3").Run()); got != 3 {
		t.Errorf("exit 3: vessel-reaper exited %d", got)
	}
	if got := exitCode(t, reaper("sh", "-c", "kill -TERM $$").Run()); got != 128+15 {
		t.Errorf("killed by SIGTERM: vessel-reaper exited %d, want 143", got)
	}
	if got := exitCode(t, reaper("/nonexistent/program").Run()); got != 127 {
		t.Errorf("no such program: vessel-reaper exited %d, want 127", got)
	}
}

func TestForwardsSignals(t *testing.T) {
	cmd := reaper("sh", "-c", `trap "exit 7" TERM; echo ready; while :; do sleep 0.05; done`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("read %q", line)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if got := exitCode(t, cmd.Wait()); got != 7 {
		t.Errorf("after SIGTERM to vessel-reaper: exited %d, want the command's trap (7)", got)
	}
}

// A daemonized grandchild (as libvirtd starts QEMU) becomes the reaper's
// child, and the reaper's death takes the command with it.
func TestAdoptsOrphansAndTakesTheCommandAlong(t *testing.T) {
	cmd := reaper("sh", "-c", `(sleep 30 & echo $!) ; echo $$; while :; do sleep 0.05; done`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	var pids []int
	for range 2 {
		line, _ := r.ReadString('\n')
		pid, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil {
			t.Fatalf("read a pid: %q", line)
		}
		pids = append(pids, pid)
	}
	orphan, command := pids[0], pids[1]
	t.Cleanup(func() { _ = syscall.Kill(orphan, syscall.SIGKILL) })
	if ppid := parentOf(t, orphan); ppid != cmd.Process.Pid {
		t.Errorf("the orphaned sleep's parent is %d, want vessel-reaper (%d)", ppid, cmd.Process.Pid)
	}
	// It reaps its orphans: one that exits leaves no zombie behind.
	_ = syscall.Kill(orphan, syscall.SIGKILL)
	waitGone(t, orphan)

	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	waitGone(t, command)
}

func parentOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// waitGone waits until pid no longer exists, not even as a zombie.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
			return
		}
	}
	t.Errorf("pid %d still exists", pid)
}
