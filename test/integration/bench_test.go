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

package integration

// Benchmarks of the API server on its embedded etcd, through the typed
// clientset over HTTPS and JSON:
//
//	go test ./test/integration/ -run '^$' -bench . -benchtime 5s
//
// Client, server and etcd share the process, so allocs/op and B/op count
// all three. The 10,000-VM list is skipped with -short.
//
// Baseline, measured in the same run: every case runs first as
// store=plain, against a second in-process server whose virtualmachines
// are a plain genericregistry.Store of the same type (plainStorage: same
// HTTPS, authentication, JSON, conversion, defaulting, managed fields,
// watch cache and embedded etcd, but no Vessel strategy: no validation, no
// status or generation handling, no field selectors or watch trigger, the
// default table), then as store=vessel against the real registry. The
// store=vessel line reports x-plain, its time per operation divided by the
// plain store's: what Vessel's registry code costs on top of the generic
// server. It is missing when a -bench pattern leaves store=plain out.

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
)

// benchClients is how many clients write at once in the concurrent cases
// and while populating a namespace.
const benchClients = 16

// benchServer is one server a benchmark runs against.
type benchServer struct {
	store string // "plain" (the baseline) or "vessel"
	*apiservertesting.TestServer
}

// startBenchServers starts the baseline and Vessel's server, baseline
// first: compare needs its time before it can report a ratio. Both are
// warmed up, so the baseline, measured first, does not pay for the first
// connection and the first use of each code path alone.
func startBenchServers(b *testing.B) []benchServer {
	servers := []benchServer{
		{"plain", apiservertesting.Start(b, apiservertesting.Options{Storage: plainStorage})},
		{"vessel", startServer(b)},
	}
	for _, srv := range servers {
		c := vms(srv.TestServer, "warm-up")
		for i := range 20 {
			name := fmt.Sprintf("vm-%d", i)
			if _, err := c.Create(b.Context(), newVM(name), metav1.CreateOptions{}); err != nil {
				b.Fatalf("warm up store=%s: %v", srv.store, err)
			}
			if _, err := c.Get(b.Context(), name, metav1.GetOptions{}); err != nil {
				b.Fatalf("warm up store=%s: %v", srv.store, err)
			}
		}
		if _, err := c.List(b.Context(), metav1.ListOptions{}); err != nil {
			b.Fatalf("warm up store=%s: %v", srv.store, err)
		}
	}
	return servers
}

// compare runs bench as one sub-benchmark per server and reports Vessel's
// time per operation as a multiple of the baseline's (x-plain).
func compare(b *testing.B, servers []benchServer, bench func(b *testing.B, s *apiservertesting.TestServer)) {
	var plain time.Duration
	for _, srv := range servers {
		b.Run("store="+srv.store, func(b *testing.B) {
			bench(b, srv.TestServer)
			if b.N == 0 {
				return
			}
			perOp := b.Elapsed() / time.Duration(b.N)
			switch {
			case srv.store == "plain":
				plain = perOp
			case plain > 0:
				b.ReportMetric(float64(perOp)/float64(plain), "x-plain")
			}
		})
	}
}

// reportThroughput reports operations per second of the measured loop.
func reportThroughput(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// runClients runs op from benchClients goroutines for b.N operations in all.
func runClients(b *testing.B, op func(i int64) error) {
	b.SetParallelism((benchClients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(next.Add(1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkCreate(b *testing.B) {
	servers := startBenchServers(b)
	var seq atomic.Int64 // names stay unique across the runs of each case

	b.Run("clients=1", func(b *testing.B) {
		compare(b, servers, func(b *testing.B, s *apiservertesting.TestServer) {
			c := vms(s, "serial")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Create(b.Context(), newVM(fmt.Sprintf("vm-%d", seq.Add(1))), metav1.CreateOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			reportThroughput(b)
		})
	})
	b.Run(fmt.Sprintf("clients=%d", benchClients), func(b *testing.B) {
		compare(b, servers, func(b *testing.B, s *apiservertesting.TestServer) {
			c := vms(s, "concurrent")
			b.ReportAllocs()
			b.ResetTimer()
			runClients(b, func(int64) error {
				_, err := c.Create(b.Context(), newVM(fmt.Sprintf("vm-%d", seq.Add(1))), metav1.CreateOptions{})
				return err
			})
			reportThroughput(b)
		})
	})
}

func BenchmarkGet(b *testing.B) {
	servers := startBenchServers(b)
	for _, srv := range servers {
		createVM(b, srv.TestServer, "bench", newVM("a"))
	}

	b.Run("clients=1", func(b *testing.B) {
		compare(b, servers, func(b *testing.B, s *apiservertesting.TestServer) {
			c := vms(s, "bench")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Get(b.Context(), "a", metav1.GetOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			reportThroughput(b)
		})
	})
	b.Run(fmt.Sprintf("clients=%d", benchClients), func(b *testing.B) {
		compare(b, servers, func(b *testing.B, s *apiservertesting.TestServer) {
			c := vms(s, "bench")
			b.ReportAllocs()
			b.ResetTimer()
			runClients(b, func(int64) error {
				_, err := c.Get(b.Context(), "a", metav1.GetOptions{})
				return err
			})
			reportThroughput(b)
		})
	})
}

func BenchmarkList(b *testing.B) {
	servers := startBenchServers(b)
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("vms=%d", n), func(b *testing.B) {
			if n > 1000 && testing.Short() {
				b.Skip("populating 10,000 VMs is skipped with -short")
			}
			ns := fmt.Sprintf("list-%d", n)
			compare(b, servers, func(b *testing.B, s *apiservertesting.TestServer) {
				populate(b, s, ns, n)
				c := vms(s, ns)
				b.ReportAllocs()
				for b.Loop() {
					list, err := c.List(b.Context(), metav1.ListOptions{})
					if err != nil {
						b.Fatal(err)
					}
					if len(list.Items) != n {
						b.Fatalf("listed %d VMs, want %d", len(list.Items), n)
					}
				}
				reportThroughput(b)
			})
		})
	}
}

// populate creates n VMs in ns from benchClients goroutines.
func populate(b *testing.B, s *apiservertesting.TestServer, ns string, n int) {
	b.Helper()
	start := time.Now()
	c := vms(s, ns)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		firstErr error
		once     sync.Once
	)
	for range benchClients {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if _, err := c.Create(b.Context(), newVM(fmt.Sprintf("vm-%05d", i)), metav1.CreateOptions{}); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatalf("populate %s: %v", ns, firstErr)
	}
	elapsed := time.Since(start)
	b.Logf("created %d VMs in %v (%.0f/s)", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
}
