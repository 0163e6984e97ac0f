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
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/vessel-vm/vessel/launcher/internal/atomicfile"
)

// ErrSupervisorRunning is Supervise's answer when another supervisor
// already holds the state directory.
var ErrSupervisorRunning = errors.New("another supervisor already runs for this state directory")

// Supervise is the supervisor process `vessel-up` starts in the
// background (`vessel-up supervise`). It owns the components of
// opts.StateDir until ctx is done: it adopts those that run already (after
// the supervisor itself was restarted), starts the missing ones once the
// ones they need are ready, and starts any that exits again, after a
// backoff of 1 s doubling to 30 s. Every change goes to run/status.json,
// which `vessel-up --status` shows, and a line to opts.Logf (the
// supervisor's log). When ctx is done it returns and leaves the components
// running: Down stops the supervisor first, then them.
//
// One supervisor per state directory: it holds run/supervisor.lock while
// it runs, and returns ErrSupervisorRunning when another one does.
func Supervise(ctx context.Context, opts Options) error {
	l, err := newLayout(opts.StateDir)
	if err != nil {
		return err
	}
	if err := opts.complete(); err != nil {
		return err
	}
	if err := l.create(); err != nil {
		return err
	}
	lock, err := lockSupervisor(l)
	if err != nil {
		return err
	}
	defer lock.Close() // the lock goes with the descriptor
	pidFile := l.pidFile(supervisorName)
	pid := strconv.Itoa(os.Getpid())
	if err := atomicfile.Write(pidFile, []byte(pid+"\n"), 0o644); err != nil {
		return fmt.Errorf("write the supervisor's PID file: %w", err)
	}
	defer func() {
		// Down removes it too; a newer supervisor may have written its own.
		if data, err := os.ReadFile(pidFile); err == nil && strings.TrimSpace(string(data)) == pid {
			os.Remove(pidFile)
		}
	}()

	// Components that run keep the ports they listen on.
	c, err := newCluster(l, opts, anyRunning(l))
	if err != nil {
		return err
	}
	c.sup.keepStatus()
	opts.Logf("supervising %s from %s (pid %s)", joinNames(c.comps), l.root, pid)
	c.sup.run(ctx)
	opts.Logf("stopped supervising; the components keep running")
	return nil
}

// lockSupervisor takes the state directory's supervisor lock. flock goes
// with the process however it ends, so a killed supervisor never leaves a
// stale lock behind; and the descriptor is close-on-exec, so the
// components it starts do not inherit it.
func lockSupervisor(l layout) (*os.File, error) {
	f, err := os.OpenFile(l.lockFile(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the supervisor lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrSupervisorRunning
		}
		return nil, fmt.Errorf("lock %s: %w", l.lockFile(), err)
	}
	return f, nil
}

func joinNames(comps []*component) string {
	names := make([]string, len(comps))
	for i, comp := range comps {
		names[i] = comp.name
	}
	return strings.Join(names, ", ")
}
