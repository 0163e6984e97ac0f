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
	s := startServer(b)
	var seq atomic.Int64 // names stay unique across the runs of each case

	b.Run("clients=1", func(b *testing.B) {
		c := vms(s, "serial")
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Create(b.Context(), newVM(fmt.Sprintf("vm-%d", seq.Add(1))), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		reportThroughput(b)
	})
	b.Run(fmt.Sprintf("clients=%d", benchClients), func(b *testing.B) {
		c := vms(s, "concurrent")
		b.ReportAllocs()
		b.ResetTimer()
		runClients(b, func(int64) error {
			_, err := c.Create(b.Context(), newVM(fmt.Sprintf("vm-%d", seq.Add(1))), metav1.CreateOptions{})
			return err
		})
		reportThroughput(b)
	})
}

func BenchmarkGet(b *testing.B) {
	s := startServer(b)
	createVM(b, s, "bench", newVM("a"))
	c := vms(s, "bench")

	b.Run("clients=1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Get(b.Context(), "a", metav1.GetOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		reportThroughput(b)
	})
	b.Run(fmt.Sprintf("clients=%d", benchClients), func(b *testing.B) {
		b.ReportAllocs()
		b.ResetTimer()
		runClients(b, func(int64) error {
			_, err := c.Get(b.Context(), "a", metav1.GetOptions{})
			return err
		})
		reportThroughput(b)
	})
}

func BenchmarkList(b *testing.B) {
	s := startServer(b)
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("vms=%d", n), func(b *testing.B) {
			if n > 1000 && testing.Short() {
				b.Skip("populating 10,000 VMs is skipped with -short")
			}
			ns := fmt.Sprintf("list-%d", n)
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
