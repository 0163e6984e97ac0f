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
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// progress is one row of the per-1,000-VMs table.
type progress struct {
	created, bound, running, listed int
	at                              time.Time
	listTime                        time.Duration
	usage                           map[string]usage
}

// result is everything the run measured.
type result struct {
	hypervisors int
	procNames   []string

	start, createEnd, settled time.Time
	failedCreates             int
	baseline, final           map[string]usage
	progress                  []progress

	acked                     int
	finalListed               int
	finalListTime             time.Duration
	lost, unbound, notRunning []string
	createLatency, toBound    []time.Duration
	toRunning, watchDelay     []time.Duration
	bindTimes                 []time.Time
	perNode                   map[string]int
}

// problems says what went wrong, or "".
func (r *result) problems() string {
	var p []string
	add := func(what string, names []string) {
		if len(names) > 0 {
			slices.Sort(names)
			p = append(p, fmt.Sprintf("%d %s (%s)", len(names), what, strings.Join(names[:min(5, len(names))], ", ")))
		}
	}
	add("acknowledged VMs missing", r.lost)
	add("not bound", r.unbound)
	add("not Running", r.notRunning)
	if r.failedCreates > 0 {
		p = append(p, fmt.Sprintf("%d creates failed", r.failedCreates))
	}
	return strings.Join(p, "; ")
}

// percentile is the nearest-rank percentile of d (sorted in place).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(float64(len(d))*p+0.5) - 1
	return d[max(0, min(i, len(d)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func mib(b int64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }

func (r *result) print(w io.Writer, o options) {
	created := r.createEnd.Sub(r.start)
	fmt.Fprintf(w, "\n%d VMs over %d simulated hypervisors, paced at %.0f/s: %d acknowledged in %v (%.1f/s), %d failed\n",
		o.vms, r.hypervisors, o.rate, r.acked, created.Round(time.Millisecond), float64(r.acked)/created.Seconds(), r.failedCreates)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency\tp50\tp95\tp99\tmax\tn\t")
	for _, l := range []struct {
		name string
		d    []time.Duration
	}{
		{"create request", r.createLatency},
		{"create -> bound", r.toBound},
		{"create -> Running", r.toRunning},
		{"watch delay (ack -> ADDED)", r.watchDelay},
	} {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t\n", l.name, ms(percentile(l.d, 0.5)), ms(percentile(l.d, 0.95)),
			ms(percentile(l.d, 0.99)), ms(percentile(l.d, 1)), len(l.d))
	}
	tw.Flush()

	if len(r.bindTimes) > 1 {
		slices.SortFunc(r.bindTimes, func(a, b time.Time) int { return a.Compare(b) })
		span := r.bindTimes[len(r.bindTimes)-1].Sub(r.start)
		fmt.Fprintf(w, "scheduler: %d bound in %v from the first create: %.1f bindings/s\n",
			len(r.bindTimes), span.Round(time.Millisecond), float64(len(r.bindTimes))/span.Seconds())
	}
	if len(r.perNode) > 0 {
		lo, hi := r.acked, 0
		for _, n := range r.perNode {
			lo, hi = min(lo, n), max(hi, n)
		}
		if len(r.perNode) < r.hypervisors {
			lo = 0
		}
		fmt.Fprintf(w, "spread: %d to %d VMs per hypervisor (%d hypervisors used)\n", lo, hi, len(r.perNode))
	}
	fmt.Fprintf(w, "list of all %d VMs at the end: %v\n", r.finalListed, r.finalListTime.Round(time.Millisecond))

	fmt.Fprintf(w, "\nevery %d VMs (RSS MiB; CPU seconds since the previous row):\n", o.every)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := []string{"created", "bound", "Running", "list"}
	for _, n := range r.procNames {
		header = append(header, n+" RSS", "CPU")
	}
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	prev := r.baseline
	for _, p := range r.progress {
		row := []string{fmt.Sprint(p.created), fmt.Sprint(p.bound), fmt.Sprint(p.running), ms(p.listTime)}
		for _, n := range r.procNames {
			u := p.usage[n]
			row = append(row, mib(u.rss), fmt.Sprintf("%.1f", (u.cpu-prev[n].cpu).Seconds()))
		}
		prev = p.usage
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()

	fmt.Fprintln(w, "\nat the end, against before the first create:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "process\tRSS MiB\tgrowth MiB\tKiB per VM\tCPU s\tCPU ms per VM\t")
	for _, n := range r.procNames {
		b, f := r.baseline[n], r.final[n]
		growth := f.rss - b.rss
		cpu := f.cpu - b.cpu
		perVM := float64(growth) / 1024 / float64(max(1, r.acked))
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%.1f\t%.2f\t\n", n, mib(f.rss), mib(growth), perVM, cpu.Seconds(),
			float64(cpu)/float64(time.Millisecond)/float64(max(1, r.acked)))
	}
	tw.Flush()
	if p := r.problems(); p != "" {
		fmt.Fprintf(w, "\nPROBLEMS: %s\n", p)
	} else {
		fmt.Fprintf(w, "\nall %d acknowledged VMs exist, bound and Running; none lost\n", r.acked)
	}
}
