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
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// processCPU reads the CPU time of the control plane's processes, found
// through the PID files of a local state directory (see package launcher): on
// one machine the paths compete for the same cores, so where the time goes
// matters as much as the latency.
type processCPU struct {
	pids map[string]int // by process name
}

func newProcessCPU(stateDir string) (*processCPU, error) {
	files, err := filepath.Glob(filepath.Join(stateDir, "run", "*.pid"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no PID files under %s/run", stateDir)
	}
	p := &processCPU{pids: map[string]int{}}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		p.pids[strings.TrimSuffix(filepath.Base(f), ".pid")] = pid
	}
	return p, nil
}

// sample returns each process's user+system CPU time so far.
func (p *processCPU) sample() map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, pid := range p.pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The command name, in parentheses, may hold spaces: fields
		// count from after its closing parenthesis. utime and stime are
		// fields 14 and 15 of the whole line.
		rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
		f := strings.Fields(rest)
		if len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		out[name] = time.Duration(utime+stime) * time.Second / clockTicks
	}
	return out
}

// cpuUse is the CPU each process spent during one measurement.
type cpuUse map[string]time.Duration

func since(before, after map[string]time.Duration) cpuUse {
	use := cpuUse{}
	for name, t := range after {
		use[name] = t - before[name]
	}
	return use
}

// printCPU writes, per operation and path, the CPU milliseconds each
// process spent per operation: the median over the rounds.
func printCPU(w io.Writer, rows []row) error {
	names := map[string]bool{}
	for _, r := range rows {
		for _, res := range r.vessel {
			for name := range res.cpu {
				names[name] = true
			}
		}
	}
	if len(names) == 0 {
		return nil
	}
	var cols []string
	for name := range names {
		cols = append(cols, name)
	}
	slices.Sort(cols)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "CPU ms per operation\tpath\t%s\t\n", strings.Join(cols, "\t"))
	for _, r := range rows {
		for _, p := range []struct {
			name    string
			results []result
		}{{"vessel", r.vessel}, {"CRD", r.crd}} {
			fmt.Fprintf(tw, "%s\t%s", r.name, p.name)
			for _, c := range cols {
				perOp := each(p.results, func(res result) float64 {
					return float64(res.cpu[c].Microseconds()) / 1000 / float64(res.ops)
				})
				fmt.Fprintf(tw, "\t%.2f", spreadOf(perOp).median)
			}
			fmt.Fprint(tw, "\t\n")
		}
	}
	return tw.Flush()
}
