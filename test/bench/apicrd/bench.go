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
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"text/tabwriter"
	"time"
)

// result is one operation measured against one backend.
type result struct {
	ops       int
	elapsed   time.Duration
	latencies []time.Duration // sorted
	// cpu is what each control-plane process spent, when known.
	cpu cpuUse
}

func (r result) opsPerSecond() float64 {
	return float64(r.ops) / r.elapsed.Seconds()
}

// percentile is the latency below which p of the operations finished
// (nearest rank).
func (r result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.latencies))*p+0.5) - 1
	return r.latencies[max(0, min(i, len(r.latencies)-1))]
}

// measure runs op for i in [0, n) on workers goroutines and times each
// call. The first error stops the run: numbers that include failures
// would measure the failures.
func measure(ctx context.Context, n, workers int, op func(ctx context.Context, i int) error) (result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	latencies := make([]time.Duration, n)
	var wg sync.WaitGroup
	begin := time.Now()
	for range workers {
		wg.Go(func() {
			for i := range next {
				start := time.Now()
				if err := op(ctx, i); err != nil {
					cancel(fmt.Errorf("operation %d: %w", i, err))
					return
				}
				latencies[i] = time.Since(start)
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(begin)
	if err := context.Cause(ctx); err != nil {
		return result{}, err
	}
	slices.Sort(latencies)
	return result{ops: n, elapsed: elapsed, latencies: latencies}, nil
}

// row is one operation, measured through both paths once per round.
type row struct {
	name        string
	vessel, crd []result // by round
}

// ratios is, per round, the vessel path's throughput over the CRD's: the
// two ran back to back, on nearly the same machine state.
func (r row) ratios() []float64 {
	out := make([]float64, len(r.vessel))
	for i := range r.vessel {
		out[i] = r.vessel[i].opsPerSecond() / r.crd[i].opsPerSecond()
	}
	return out
}

// each applies f to every round's result.
func each(results []result, f func(result) float64) []float64 {
	out := make([]float64, len(results))
	for i, r := range results {
		out[i] = f(r)
	}
	return out
}

func opsPerSecond(r result) float64 { return r.opsPerSecond() }

func latencyMS(p float64) func(result) float64 {
	return func(r result) float64 { return float64(r.percentile(p).Microseconds()) / 1000 }
}

// spread is a number measured once per round: its median and range.
type spread struct{ median, low, high float64 }

func spreadOf(values []float64) spread {
	s := slices.Clone(values)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return spread{}
	}
	median := s[n/2]
	if n%2 == 0 {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	return spread{median: median, low: s[0], high: s[n-1]}
}

// format prints the median and, in brackets, the lowest and highest round,
// each with verb (e.g. "%.0f").
func (s spread) format(verb string) string {
	return fmt.Sprintf(verb+" ["+verb+"-"+verb+"]", s.median, s.low, s.high)
}

// printTable writes the comparison: throughput, its ratio, and latency
// percentiles, each as the median over the rounds with its range. A ratio
// below 1 means the aggregated path is slower.
func printTable(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tvessel ops/s\tCRD ops/s\tvessel/CRD\tvessel p50 ms\tCRD p50 ms\tvessel p99 ms\tCRD p99 ms\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.name,
			spreadOf(each(r.vessel, opsPerSecond)).format("%.0f"),
			spreadOf(each(r.crd, opsPerSecond)).format("%.0f"),
			spreadOf(r.ratios()).format("%.2f"),
			spreadOf(each(r.vessel, latencyMS(0.50))).format("%.1f"),
			spreadOf(each(r.crd, latencyMS(0.50))).format("%.1f"),
			spreadOf(each(r.vessel, latencyMS(0.99))).format("%.1f"),
			spreadOf(each(r.crd, latencyMS(0.99))).format("%.1f"))
	}
	return tw.Flush()
}
