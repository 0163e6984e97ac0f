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
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times.
const clockTicks = 100

// procs are the processes whose memory and CPU the report follows, by
// name: the control plane's (from the launcher's PID files) and the
// simulated agents' process.
type procs map[string]int

// controlPlaneProcs reads the PID files of the launcher's state directory.
func controlPlaneProcs(stateDir string) (procs, error) {
	files, err := filepath.Glob(filepath.Join(stateDir, "run", "*.pid"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no PID files under %s/run", stateDir)
	}
	p := procs{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".pid")
		if name == "supervisor" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		p[name] = pid
	}
	return p, nil
}

// usage is one process's resident memory and CPU time so far.
type usage struct {
	rss int64 // bytes
	cpu time.Duration
}

// sample reads every process's usage; a process that is gone is left out.
func (p procs) sample() map[string]usage {
	out := map[string]usage{}
	for name, pid := range p {
		if u, err := readUsage(pid); err == nil {
			out[name] = u
		}
	}
	return out
}

func (p procs) names() []string {
	var names []string
	for n := range p {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func readUsage(pid int) (usage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, err
	}
	// Fields count from after the command's closing parenthesis: utime
	// and stime are the 14th and 15th of the line, rss pages the 24th.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	if len(f) < 22 {
		return usage{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	rssPages, _ := strconv.ParseInt(f[21], 10, 64)
	return usage{
		rss: rssPages * int64(os.Getpagesize()),
		cpu: time.Duration(utime+stime) * time.Second / clockTicks,
	}, nil
}
