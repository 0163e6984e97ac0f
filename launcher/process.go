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
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vessel-vm/vessel/launcher/internal/atomicfile"
)

// stopGracePeriod is how long a process gets between SIGTERM and SIGKILL.
// kube-apiserver drains for a few seconds on SIGTERM; etcd exits at once.
const stopGracePeriod = 20 * time.Second

// process is one detached child: it runs in its own session, so that it
// survives the launcher (`make up` returns while the control plane keeps
// running) and is not hit by a Ctrl-C meant for the launcher's terminal.
// It is found again later through its PID file.
type process struct {
	name    string
	pid     int
	pidFile string
	logFile string
	// exited is closed once the launcher has reaped the child. Only the
	// process that started a child can wait for it; Down, in another
	// process, polls /proc instead.
	exited chan struct{}
}

// startProcess starts binary with args, its output going to the process's
// log file (truncated at each start, so that the log covers this run only),
// and records its PID.
func startProcess(l layout, name, binary string, args []string) (*process, error) {
	logFile := l.logFile(name)
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log for %s: %w", name, err)
	}
	// The child gets its own descriptor, so ours can go once it started.
	defer out.Close()

	cmd := exec.Command(binary, args...)
	cmd.Dir = l.root
	cmd.Stdout, cmd.Stderr = out, out // *os.File: handed over, not copied by a goroutine
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{
		name:    name,
		pid:     cmd.Process.Pid,
		pidFile: l.pidFile(name),
		logFile: logFile,
		exited:  make(chan struct{}),
	}
	go func() {
		// Reaps the child if it dies while the launcher still runs; the
		// exit status is in the log.
		_ = cmd.Wait()
		close(p.exited)
	}()
	if err := atomicfile.Write(p.pidFile, []byte(strconv.Itoa(p.pid)+"\n"), 0o644); err != nil {
		p.stop()
		return nil, fmt.Errorf("write PID file for %s: %w", name, err)
	}
	return p, nil
}

// running reports whether the child has not exited yet.
func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop terminates the child gracefully, then forcibly, and removes its PID
// file.
func (p *process) stop() {
	if p.running() {
		_ = signalGroup(p.pid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(stopGracePeriod):
			_ = signalGroup(p.pid, syscall.SIGKILL)
			<-p.exited
		}
	}
	_ = os.Remove(p.pidFile)
}

// logTail returns the last lines of the process's log, for error messages
// that otherwise would only say "not ready".
func (p *process) logTail() string {
	return tail(p.logFile, 20)
}

func tail(path string, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const window = 16 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		_, _ = f.Seek(-window, io.SeekEnd)
	}
	data, _ := io.ReadAll(f)
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// ownedPID reads a PID file and reports the PID if that process is alive
// and belongs to the state directory. A PID alone is not enough: after a
// reboot or a crash it may have been reused by an unrelated process, which
// must never be signalled. Every child's command line names files under the
// state directory, which is what is checked. A zombie has an empty command
// line, so it counts as gone.
func ownedPID(pidFile, stateDir string) (int, bool) {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, ownedBy(pid, stateDir)
}

func ownedBy(pid int, stateDir string) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte(stateDir+string(filepath.Separator)))
}

// stopByPIDFile terminates the process recorded in pidFile, when it is
// still one of ours, and removes the PID file.
func stopByPIDFile(pidFile, stateDir string) error {
	pid, ok := ownedPID(pidFile, stateDir)
	if ok {
		if err := signalGroup(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal pid %d: %w", pid, err)
		}
		if !waitGone(pid, stateDir, stopGracePeriod) {
			_ = signalGroup(pid, syscall.SIGKILL)
			if !waitGone(pid, stateDir, 5*time.Second) {
				return fmt.Errorf("pid %d survived SIGKILL", pid)
			}
		}
	}
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", pidFile, err)
	}
	return nil
}

// signalGroup signals the process group a child leads (it is a session
// leader, see startProcess), so that helpers it spawned go with it.
func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}

func waitGone(pid int, stateDir string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for ownedBy(pid, stateDir) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}
