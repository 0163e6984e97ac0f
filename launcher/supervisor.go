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
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vessel-vm/vessel/launcher/internal/atomicfile"
)

// supervisor starts components, tells when they are ready, and records
// their state. Start (in-process, for tests) uses it to start each
// component once in order; Supervise (the background process vessel-up
// runs) also adopts components that already run and restarts any that
// exits, with backoff.
type supervisor struct {
	layout layout
	comps  []*component
	logf   func(format string, args ...any)
	// statusFile keeps the status for `vessel-up --status`; empty keeps it
	// in memory only.
	statusFile string

	mu     sync.Mutex
	status Status
	// changed is closed and replaced at every status change.
	changed chan struct{}
}

func newSupervisor(l layout, comps []*component, logf func(string, ...any)) *supervisor {
	s := &supervisor{layout: l, comps: comps, logf: logf, changed: make(chan struct{})}
	for _, comp := range comps {
		s.status.Components = append(s.status.Components, ComponentStatus{
			Name: comp.name, State: StateWaiting, LogFile: l.logFile(comp.name),
		})
	}
	return s
}

// keepStatus makes the supervisor write its status to the state
// directory, carrying over what an earlier supervisor recorded of restarts
// and exits.
func (s *supervisor) keepStatus() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statusFile = s.layout.statusFile()
	s.status.Supervisor = SupervisorStatus{PID: os.Getpid(), StartedAt: time.Now().UTC(), LogFile: s.layout.logFile(supervisorName)}
	var earlier Status
	if data, err := os.ReadFile(s.statusFile); err == nil && json.Unmarshal(data, &earlier) == nil {
		for i := range s.status.Components {
			c := &s.status.Components[i]
			if old := earlier.Component(c.Name); old != nil {
				c.Restarts, c.LastExit, c.StartedAt = old.Restarts, old.LastExit, old.StartedAt
				if old.PID != 0 && !ownedBy(old.PID, s.layout.root) {
					// It ended while no supervisor watched it.
					c.LastExit = &Exit{At: time.Now().UTC(), Reason: fmt.Sprintf("pid %d ended while no supervisor ran", old.PID)}
				}
			}
		}
	}
	s.saveLocked()
}

// update changes one component's status and, if that changed anything,
// saves it and wakes up waiters.
func (s *supervisor) update(name string, change func(*ComponentStatus)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.status.Component(name)
	if c == nil {
		return
	}
	before := *c
	change(c)
	if reflect.DeepEqual(before, *c) {
		return
	}
	s.saveLocked()
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *supervisor) saveLocked() {
	if s.statusFile == "" {
		return
	}
	data, err := json.MarshalIndent(s.status, "", "  ")
	if err == nil {
		err = atomicfile.Write(s.statusFile, append(data, '\n'), 0o644)
	}
	if err != nil {
		s.logf("record status: %v", err)
	}
}

// launch runs comp's setup and prepare steps (prepare once) and starts its
// process; it does not wait for it to be ready.
func (s *supervisor) launch(ctx context.Context, comp *component) (*process, error) {
	if comp.setup != nil {
		if err := comp.setup(ctx); err != nil {
			return nil, err
		}
	}
	if comp.prepare != nil && !comp.prepared {
		if err := comp.prepare(ctx); err != nil {
			return nil, err
		}
		comp.prepared = true
	}
	binary, args := comp.binary, comp.args
	if len(comp.enter) > 0 {
		binary, args = comp.enter[0], slices.Concat(comp.enter[1:], []string{comp.binary}, comp.args)
	}
	p, err := startProcess(s.layout, comp.name, binary, args)
	if err != nil {
		return nil, err
	}
	comp.proc = p
	s.update(comp.name, func(c *ComponentStatus) {
		if c.StartedAt != nil {
			c.Restarts++
		}
		c.State, c.PID, c.Adopted, c.Message = StateStarting, p.pid, false, ""
		c.StartedAt, c.ReadyAt, c.NextStart = timePtr(p.startedAt), nil, nil
	})
	return p, nil
}

// adopt takes over comp's process that an earlier supervisor started, if
// it still runs.
func (s *supervisor) adopt(comp *component) *process {
	p := adoptProcess(s.layout, comp.name, comp.binary)
	if p == nil {
		return nil
	}
	comp.proc = p
	s.update(comp.name, func(c *ComponentStatus) {
		if c.StartedAt == nil {
			c.StartedAt = timePtr(p.startedAt)
		}
		c.State, c.PID, c.Adopted, c.Message = StateStarting, p.pid, true, ""
		c.ReadyAt, c.NextStart = nil, nil
	})
	return p
}

// start launches comp, or adopts its process if one runs (a virtlogd that
// stayed with its guests through Down), and waits until it is ready: the
// in-process path, which gives up on the first failure. The process is
// returned whenever it started, so that the caller can stop it.
func (s *supervisor) start(ctx context.Context, comp *component) (*process, error) {
	p := s.adopt(comp)
	if p == nil {
		var err error
		if p, err = s.launch(ctx, comp); err != nil {
			return nil, err
		}
	}
	if err := comp.ready(ctx, p); err != nil {
		s.update(comp.name, func(c *ComponentStatus) { c.Message = firstLine(err.Error()) })
		return p, err
	}
	s.markReady(comp, p)
	return p, nil
}

func (s *supervisor) markReady(comp *component, p *process) {
	s.update(comp.name, func(c *ComponentStatus) {
		if c.PID == p.pid {
			c.State, c.ReadyAt, c.Failures, c.Message = StateRunning, timePtr(time.Now()), 0, ""
		}
	})
	if comp.onExit != nil {
		go func() {
			<-p.exited
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			comp.onExit(ctx)
		}()
	}
}

// run supervises every component until ctx is done, then returns, leaving
// the processes running: stopping them is Down's job, after it has
// stopped the supervisor.
func (s *supervisor) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, comp := range s.comps {
		wg.Go(func() { s.supervise(ctx, comp) })
	}
	wg.Wait()
}

// supervise keeps one component running: it adopts the process if one
// runs, otherwise starts it once the components it needs are ready; waits
// until it is ready, then until it exits; and starts it again after a
// backoff.
func (s *supervisor) supervise(ctx context.Context, comp *component) {
	var delay time.Duration
	for ctx.Err() == nil {
		p := s.adopt(comp)
		if p != nil {
			s.logf("%s: pid %d runs already; watching it", comp.name, p.pid)
		} else {
			if !s.waitFor(ctx, comp) {
				return
			}
			var err error
			if p, err = s.launch(ctx, comp); err != nil {
				if ctx.Err() != nil {
					return
				}
				delay = nextBackoff(delay, 0)
				s.failed(comp, nil, firstLine(err.Error()), delay)
				s.logf("%s: could not start: %v; trying again in %v", comp.name, err, delay)
				if !sleep(ctx, delay) {
					return
				}
				continue
			}
			s.logf("%s: started pid %d", comp.name, p.pid)
		}
		s.awaitReady(ctx, comp, p)
		select {
		case <-p.exited:
		case <-ctx.Done():
			return
		}
		ranFor := time.Since(p.startedAt)
		delay = nextBackoff(delay, ranFor)
		s.failed(comp, p, p.exitReason, delay)
		s.logf("%s: pid %d ended (%s) after %v; starting it again in %v; end of %s:\n%s",
			comp.name, p.pid, p.exitReason, ranFor.Round(time.Millisecond), delay, p.logFile, indent(tail(p.logFile, 10)))
		if !sleep(ctx, delay) {
			return
		}
	}
}

// waitFor waits until the components comp needs are ready, and reports
// false when ctx is done first.
func (s *supervisor) waitFor(ctx context.Context, comp *component) bool {
	for {
		missing, changed := s.notReady(comp.after)
		if len(missing) == 0 {
			return true
		}
		s.update(comp.name, func(c *ComponentStatus) {
			if c.State != StateBackoff {
				c.State = StateWaiting
			}
			c.Message = waitingMessage(missing)
		})
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// notReady returns those of names that are not ready, and the channel
// closed at the next change.
func (s *supervisor) notReady(names []string) ([]string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var missing []string
	for _, name := range names {
		if c := s.status.Component(name); c != nil && c.State != StateRunning {
			missing = append(missing, name)
		}
	}
	return missing, s.changed
}

func waitingMessage(missing []string) string {
	return "waiting for " + strings.Join(missing, ", ")
}

// awaitReady waits until p is ready, exits, or ctx is done. A process that
// is not ready within its timeout keeps running (it may wait for another
// component) and is probed again; only an exit makes a restart.
func (s *supervisor) awaitReady(ctx context.Context, comp *component, p *process) {
	for {
		err := comp.ready(ctx, p)
		if err == nil {
			s.markReady(comp, p)
			how := "started"
			if p.adopted {
				how = "adopted"
			}
			s.logf("%s: pid %d ready %v after it was %s", comp.name, p.pid, time.Since(p.startedAt).Round(time.Millisecond), how)
			return
		}
		if ctx.Err() != nil || !p.running() {
			return
		}
		s.update(comp.name, func(c *ComponentStatus) { c.Message = "not ready: " + firstLine(err.Error()) })
		if !sleep(ctx, time.Second) {
			return
		}
	}
}

// failed records that comp's process p ended (or, p nil, could not be
// started) and when it starts again.
func (s *supervisor) failed(comp *component, p *process, reason string, delay time.Duration) {
	now := time.Now()
	s.update(comp.name, func(c *ComponentStatus) {
		exit := &Exit{At: now.UTC(), Reason: reason}
		if p != nil {
			exit.RanFor = now.Sub(p.startedAt).Round(time.Millisecond)
		}
		if p == nil || c.ReadyAt == nil {
			c.Failures++
		}
		c.LastExit, c.State, c.PID = exit, StateBackoff, 0
		c.NextStart, c.Message = timePtr(now.Add(delay)), ""
	})
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func timePtr(t time.Time) *time.Time {
	t = t.UTC()
	return &t
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
