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
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vessel-vm/vessel/launcher/internal/atomicfile"
)

// giveUpAfterFailures is how many failed starts in a row of one component
// make Up stop waiting: the supervisor keeps trying, but the user should
// look at the log.
const giveUpAfterFailures = 3

// UpResult is the control plane Up left running.
type UpResult struct {
	// AlreadyRunning says everything ran, and was ready, before Up.
	AlreadyRunning bool
	Status         *Status
	opts           Options
	layout         layout
}

// Kubeconfig returns the path of the kubeconfig for name (admin or a
// tenant user).
func (r *UpResult) Kubeconfig(name string) string { return r.layout.kubeconfig(name) }

// Options returns the completed options Up was called with.
func (r *UpResult) Options() Options { return r.opts }

// Up is `make up`: it makes sure a supervisor runs for opts.StateDir (see
// Supervise), starting one with supervisorCommand plus
// --options=<state>/supervisor.json when none does, and waits until every
// component is ready. It starts nothing itself, so it is the same whether
// nothing runs yet, everything does (then it only reports), or a component
// or the supervisor was killed (the supervisor brings the component back,
// or the new supervisor adopts what runs and starts what is missing).
//
// It gives up when ctx is done, the supervisor exits, or a component
// failed giveUpAfterFailures starts in a row; if nothing ran before, it
// then stops everything again. Progress goes to opts.Logf.
func Up(ctx context.Context, opts Options, supervisorCommand []string) (*UpResult, error) {
	l, err := newLayout(opts.StateDir)
	if err != nil {
		return nil, err
	}
	if err := opts.complete(); err != nil {
		return nil, err
	}
	if err := l.create(); err != nil {
		return nil, err
	}
	_, supervised := ownedPID(l.pidFile(supervisorName), l.root)
	fresh := !supervised && !anyRunning(l)
	if !fresh {
		if err := checkSameControlPlane(l, opts); err != nil {
			return nil, err
		}
	}

	var child *process
	if !supervised {
		if fresh {
			// The restarts and exits of a control plane that is gone
			// altogether are no news.
			os.Remove(l.statusFile())
		}
		if err := saveOptions(l.optionsFile(), opts); err != nil {
			return nil, err
		}
		child, err = spawn(l, supervisorName, supervisorCommand[0], append(supervisorCommand[1:], "--options="+l.optionsFile()))
		if err != nil {
			return nil, fmt.Errorf("start the supervisor: %w", err)
		}
		opts.Logf("started the supervisor (pid %d); its log: %s", child.pid, child.logFile)
	}

	res, err := waitHealthy(ctx, l, opts, child)
	if err != nil {
		if !fresh {
			return nil, fmt.Errorf("%w\n(the supervisor keeps at it: vessel-up --status shows how it goes)", err)
		}
		// As if never started: nothing keeps retrying in the background.
		if downErr := Down(l.root); downErr != nil {
			err = errors.Join(err, fmt.Errorf("stop what started: %w", downErr))
		}
		return nil, err
	}
	res.AlreadyRunning = supervised && res.AlreadyRunning
	return res, nil
}

// waitHealthy polls the status until every component is ready, reporting
// what changes.
func waitHealthy(ctx context.Context, l layout, opts Options, child *process) (*UpResult, error) {
	seen := map[string]ComponentStatus{}
	for first := true; ; first = false {
		st, err := ReadStatus(l.root)
		if err != nil {
			return nil, err
		}
		if first && st.Healthy() {
			return &UpResult{AlreadyRunning: true, Status: st, opts: opts, layout: l}, nil
		}
		for _, c := range st.Components {
			if first {
				switch {
				case c.State == StateRunning:
				case c.PID != 0:
					opts.Logf("%s is starting (pid %d)", c.Name, c.PID)
				case st.Supervisor.Running && c.LastExit != nil:
					opts.Logf("%s is not running (%s); waiting for the supervisor to start it", c.Name, c.LastExit.Reason)
				default:
					opts.Logf("%s is not running; waiting for the supervisor to start it", c.Name)
				}
			} else {
				report(opts.Logf, seen[c.Name], c)
			}
			seen[c.Name] = c
		}
		if st.Healthy() {
			return &UpResult{Status: st, opts: opts, layout: l}, nil
		}
		if !st.Supervisor.Running {
			switch {
			case child == nil:
				return nil, fmt.Errorf("the supervisor of %s is gone; end of %s:\n%s", l.root, st.Supervisor.LogFile, tail(st.Supervisor.LogFile, 20))
			case !child.running():
				return nil, fmt.Errorf("the supervisor (pid %d) %s; end of %s:\n%s", child.pid, child.exitReason, child.logFile, tail(child.logFile, 20))
			}
		} else if child != nil && !child.running() {
			// A concurrent vessel-up started the one that runs.
			child = nil
		}
		for _, c := range st.Components {
			if c.Failures >= giveUpAfterFailures {
				return nil, fmt.Errorf("%s failed to start %d times in a row (last: %s); end of %s:\n%s",
					c.Name, c.Failures, c.LastExit.Reason, c.LogFile, tail(c.LogFile, 20))
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the control plane in %s: %w; %s", l.root, ctx.Err(), notReadySummary(st))
		case <-time.After(readyPollInterval):
		}
	}
}

// report logs a component's state when it changed in a way worth telling.
func report(logf func(string, ...any), before, now ComponentStatus) {
	if before.State == now.State && before.PID == now.PID {
		return
	}
	switch now.State {
	case StateRunning:
		logf("%s ready (pid %d)", now.Name, now.PID)
	case StateBackoff:
		if now.LastExit != nil {
			logf("%s ended (%s); the supervisor starts it again", now.Name, now.LastExit.Reason)
		}
	}
}

func notReadySummary(st *Status) string {
	var parts []string
	for _, c := range st.Components {
		if c.State != StateRunning {
			parts = append(parts, c.Name+" "+describe(c))
		}
	}
	return "not ready: " + strings.Join(parts, "; ")
}

// describe is a component's state and why, in a few words.
func describe(c ComponentStatus) string {
	s := string(c.State)
	switch {
	case c.Message != "":
		s += " (" + c.Message + ")"
	case c.State == StateBackoff && c.LastExit != nil:
		s += " (" + c.LastExit.Reason + ")"
	}
	return s
}

// checkSameControlPlane refuses to take over a running control plane that
// was started with other hypervisors: their agents would keep running
// under the old names.
func checkSameControlPlane(l layout, opts Options) error {
	running, err := LoadOptions(l.optionsFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil // started before vessel-up kept its options
	}
	if err != nil {
		return err
	}
	if !slices.Equal(running.Hypervisors, opts.Hypervisors) || running.NoAgent != opts.NoAgent {
		return fmt.Errorf("the control plane in %s runs with hypervisors %q (no agent: %v), not %q (no agent: %v); stop it first (vessel-up --down)",
			l.root, running.Hypervisors, running.NoAgent, opts.Hypervisors, opts.NoAgent)
	}
	if running.replicas() != opts.replicas() {
		return fmt.Errorf("the control plane in %s runs %d vessel-apiservers on %d etcd members, not %d on %d; stop it first (vessel-up --down)",
			l.root, running.APIServers, running.EtcdMembers, opts.APIServers, opts.EtcdMembers)
	}
	return nil
}

// saveOptions writes the options the supervisor is to run with.
func saveOptions(path string, opts Options) error {
	data, err := json.MarshalIndent(opts, "", "  ")
	if err != nil {
		return fmt.Errorf("encode options: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save options for the supervisor: %w", err)
	}
	return nil
}

// LoadOptions reads the options Up saved for the supervisor (the file
// `vessel-up supervise --options` names).
func LoadOptions(path string) (Options, error) {
	var opts Options
	data, err := os.ReadFile(path)
	if err != nil {
		return opts, err
	}
	if err := json.Unmarshal(data, &opts); err != nil {
		return opts, fmt.Errorf("read %s: %w", path, err)
	}
	return opts, nil
}

// MetricsEndpoints say where the local system's Prometheus metrics are and
// with which files to scrape them.
type MetricsEndpoints struct {
	// Agents (by hypervisor) and VesselAPIServer are the /metrics URLs.
	// They need a caller with get on /metrics (ClusterRole
	// vessel.dev:metrics-scraper; the admin has it).
	Agents          map[string]string
	VesselAPIServer string
	// AgentCAFile verifies the agent, ClusterCAFile the vessel-apiserver.
	AgentCAFile, ClusterCAFile string
	// AdminCertFile and AdminKeyFile are the admin's client certificate.
	AdminCertFile, AdminKeyFile string
}

// Metrics says where the metrics of the control plane Up left running are.
func (r *UpResult) Metrics() (MetricsEndpoints, error) {
	data, err := os.ReadFile(r.layout.portsFile())
	if err != nil {
		return MetricsEndpoints{}, fmt.Errorf("read the control plane's ports: %w", err)
	}
	var ports Ports
	if err := json.Unmarshal(data, &ports); err != nil {
		return MetricsEndpoints{}, fmt.Errorf("read the control plane's ports from %s: %w", r.layout.portsFile(), err)
	}
	pkiDir := r.layout.pkiDir()
	agents := map[string]string{}
	for hv, port := range ports.AgentMetrics {
		agents[hv] = fmt.Sprintf("https://127.0.0.1:%d/metrics", port)
	}
	return MetricsEndpoints{
		Agents:          agents,
		VesselAPIServer: fmt.Sprintf("https://127.0.0.1:%d/metrics", ports.VesselAPIServer),
		AgentCAFile:     filepath.Join(pkiDir, "agent-ca.crt"),
		ClusterCAFile:   filepath.Join(pkiDir, "ca.crt"),
		AdminCertFile:   filepath.Join(pkiDir, "admin.crt"),
		AdminKeyFile:    filepath.Join(pkiDir, "admin.key"),
	}, nil
}
