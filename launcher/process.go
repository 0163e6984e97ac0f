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

const (
	// stopGracePeriod is how long a process gets between SIGTERM and
	// SIGKILL. kube-apiserver drains for a few seconds on SIGTERM; etcd
	// exits at once.
	stopGracePeriod = 20 * time.Second
	// adoptedPollInterval is how often a process this launcher did not
	// start (it cannot wait for it) is checked for being gone.
	adoptedPollInterval = 250 * time.Millisecond
	// maxLogSize is the size past which a log is moved to <name>.log.1 at
	// the next start rather than appended to.
	maxLogSize = 32 << 20
)

// process is one detached component: it runs in its own session, so that
// it survives the launcher (`make up` returns while the control plane keeps
// running) and the supervisor, and is not hit by a Ctrl-C meant for the
// launcher's terminal. It is found again later through its PID file.
type process struct {
	name      string
	pid       int
	pidFile   string
	logFile   string
	startedAt time.Time
	// adopted is true for a process found running from its PID file
	// rather than started by this launcher.
	adopted bool
	// exited is closed once the process is gone: reaped by this launcher
	// when it is its child, seen gone in /proc when it was adopted (only
	// the parent can wait for a process). exitReason is set before.
	exited     chan struct{}
	exitReason string
}

// startProcess starts binary with args (see spawn) and records its PID.
func startProcess(l layout, name, binary string, args []string) (*process, error) {
	p, err := spawn(l, name, binary, args)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(p.pidFile, []byte(strconv.Itoa(p.pid)+"\n"), 0o644); err != nil {
		p.stop()
		return nil, fmt.Errorf("write PID file for %s: %w", name, err)
	}
	return p, nil
}

// spawn starts binary with args in its own session, its output appended to
// the process's log file after a line that marks the start (so that the
// log keeps why an earlier run ended).
func spawn(l layout, name, binary string, args []string) (*process, error) {
	logFile := l.logFile(name)
	out, err := openLog(logFile, fmt.Sprintf("%s: starting %s", time.Now().Format(time.RFC3339), binary))
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
	// Start returns once the child has exec'd, but the kernel fills in the
	// new program's command line a moment later; until then /proc shows
	// none, and ownedBy would not take the process for this state
	// directory's (a status read right after a start said it was not
	// running).
	for deadline := time.Now().Add(time.Second); len(cmdline(cmd.Process.Pid)) == 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Microsecond)
	}
	p := &process{
		name:      name,
		pid:       cmd.Process.Pid,
		pidFile:   l.pidFile(name),
		logFile:   logFile,
		startedAt: time.Now(),
		exited:    make(chan struct{}),
	}
	go func() {
		// Reaps the child if it dies while the launcher still runs.
		err := cmd.Wait()
		if cmd.ProcessState != nil {
			p.exitReason = cmd.ProcessState.String() // "signal: killed", "exit status 1"
		} else {
			p.exitReason = err.Error()
		}
		close(p.exited)
	}()
	return p, nil
}

// openLog opens path for appending, after writing a marker line; a log
// that has grown past maxLogSize is moved aside to path.1 first.
func openLog(path, marker string) (*os.File, error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > maxLogSize {
		if err := os.Rename(path, path+".1"); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(f, "==== %s ====\n", marker); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// adoptProcess returns the running process of component name when its PID
// file names a live process of binary that belongs to the state directory
// (see ownedPID), and nil when there is none. A launcher that
// did not start the process cannot wait for it, so a goroutine polls
// /proc until it is gone.
func adoptProcess(l layout, name, binary string) *process {
	pidFile := l.pidFile(name)
	pid, ok := ownedPID(pidFile, l.root)
	if !ok || !runsBinary(pid, binary) {
		return nil
	}
	p := &process{
		name:      name,
		pid:       pid,
		pidFile:   pidFile,
		logFile:   l.logFile(name),
		startedAt: time.Now(),
		adopted:   true,
		exited:    make(chan struct{}),
	}
	go func() {
		for ownedBy(pid, l.root) {
			time.Sleep(adoptedPollInterval)
		}
		p.exitReason = "status unknown: started by an earlier supervisor"
		close(p.exited)
	}()
	return p
}

// running reports whether the process has not exited yet.
func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop terminates the process gracefully, then forcibly, and removes its
// PID file.
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
	return bytes.Contains(cmdline(pid), []byte(stateDir+string(filepath.Separator)))
}

// runsBinary reports whether pid's program has binary's file name, or is
// vessel-reaper running it (libvirtd). A PID file that after a PID reuse
// names another component of the same state directory must not be taken
// for this one.
func runsBinary(pid int, binary string) bool {
	argv := bytes.Split(bytes.TrimSuffix(cmdline(pid), []byte{0}), []byte{0})
	if filepath.Base(string(argv[0])) == filepath.Base(binary) {
		return true
	}
	if filepath.Base(string(argv[0])) != reaperName {
		return false
	}
	for _, a := range argv[1:] {
		if filepath.Base(string(a)) == filepath.Base(binary) {
			return true
		}
	}
	return false
}

// reaperName is the file name of cmd/vessel-reaper.
const reaperName = "vessel-reaper"

func cmdline(pid int) []byte {
	data, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return data
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

// signalGroup signals the process group a component leads (it is a
// session leader, see startProcess), so that helpers it spawned go with it.
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
