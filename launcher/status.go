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
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// ComponentState is where a component stands in its supervisor's eyes.
type ComponentState string

const (
	// StateWaiting: not started yet, waiting for the components it needs.
	StateWaiting ComponentState = "waiting"
	// StateStarting: the process runs but is not ready yet.
	StateStarting ComponentState = "starting"
	// StateRunning: the process runs and was ready after it started.
	StateRunning ComponentState = "running"
	// StateBackoff: the process exited; the supervisor starts it again at
	// NextStart.
	StateBackoff ComponentState = "backoff"
	// StateStopped: no process, and nobody is going to start one.
	StateStopped ComponentState = "stopped"
)

// Status is what `vessel-up --status` shows: the supervisor and each
// component of one state directory. The supervisor keeps it in
// run/status.json; ReadStatus checks it against the live processes.
type Status struct {
	StateDir   string            `json:"-"`
	Supervisor SupervisorStatus  `json:"supervisor"`
	Components []ComponentStatus `json:"components"`
}

// SupervisorStatus is the supervisor process.
type SupervisorStatus struct {
	PID       int       `json:"pid,omitempty"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	// Running is filled in by ReadStatus from /proc, never stored.
	Running bool   `json:"-"`
	LogFile string `json:"logFile,omitempty"`
}

// ComponentStatus is one supervised process.
type ComponentStatus struct {
	Name  string         `json:"name"`
	State ComponentState `json:"state"`
	PID   int            `json:"pid,omitempty"`
	// Adopted says the supervisor found the process running (started by
	// an earlier supervisor) rather than starting it.
	Adopted   bool       `json:"adopted,omitempty"`
	StartedAt *time.Time `json:"startedAt,omitempty"`
	ReadyAt   *time.Time `json:"readyAt,omitempty"`
	// Restarts counts the starts after the first one, kept across
	// supervisors until `vessel-up --down`.
	Restarts int `json:"restarts"`
	// Failures counts the exits in a row that came before the process
	// was ready; vessel-up gives up waiting when it grows.
	Failures  int        `json:"failures,omitempty"`
	LastExit  *Exit      `json:"lastExit,omitempty"`
	NextStart *time.Time `json:"nextStart,omitempty"`
	// Message says what the component waits for, or why it is not ready.
	Message string `json:"message,omitempty"`
	LogFile string `json:"logFile"`
}

// Exit is how a component's process ended.
type Exit struct {
	At     time.Time     `json:"at"`
	Reason string        `json:"reason"`
	RanFor time.Duration `json:"ranFor"`
}

// Healthy reports whether the supervisor and every component run, each
// component ready.
func (s *Status) Healthy() bool {
	if !s.Supervisor.Running || len(s.Components) == 0 {
		return false
	}
	for _, c := range s.Components {
		if c.State != StateRunning {
			return false
		}
	}
	return true
}

// Component returns the named component's status, or nil.
func (s *Status) Component(name string) *ComponentStatus {
	i := slices.IndexFunc(s.Components, func(c ComponentStatus) bool { return c.Name == name })
	if i < 0 {
		return nil
	}
	return &s.Components[i]
}

// ReadStatus reports the control plane of stateDir: what its supervisor
// last recorded, corrected by what runs now (a process that died since is
// not running, whatever the file says; without a supervisor, nothing is
// being started). Without a status file, the PID files tell what runs.
func ReadStatus(stateDir string) (*Status, error) {
	l, err := newLayout(stateDir)
	if err != nil {
		return nil, err
	}
	st := &Status{}
	data, err := os.ReadFile(l.statusFile())
	switch {
	case err == nil:
		if err := json.Unmarshal(data, st); err != nil {
			return nil, fmt.Errorf("read %s: %w", l.statusFile(), err)
		}
	case errors.Is(err, os.ErrNotExist):
		names := startOrder
		if opts, err := LoadOptions(l.optionsFile()); err == nil {
			names = componentNames(opts)
		}
		for _, name := range names {
			st.Components = append(st.Components, ComponentStatus{Name: name, State: StateStopped, LogFile: l.logFile(name)})
		}
	default:
		return nil, fmt.Errorf("read status: %w", err)
	}
	st.StateDir = l.root
	st.Supervisor.LogFile = l.logFile(supervisorName)
	if pid, ok := ownedPID(l.pidFile(supervisorName), l.root); ok {
		st.Supervisor.PID, st.Supervisor.Running = pid, true
	}
	for i := range st.Components {
		c := &st.Components[i]
		pid, alive := ownedPID(l.pidFile(c.Name), l.root)
		switch {
		case !st.Supervisor.Running && alive:
			// The file is stale, or was never written (an in-process
			// launcher keeps none); readiness is not known.
			c.State, c.PID, c.NextStart = StateRunning, pid, nil
			c.Message = "no supervisor: not restarted if it exits"
		case !st.Supervisor.Running:
			c.State, c.PID, c.NextStart = StateStopped, 0, nil
			c.Message = "no supervisor runs to start it"
		case !alive && (c.State == StateRunning || c.State == StateStarting):
			c.State, c.Message = StateBackoff, fmt.Sprintf("pid %d is gone; the supervisor has not noticed yet", c.PID)
			c.PID = 0
		}
	}
	return st, nil
}
