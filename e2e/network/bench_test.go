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

package network

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	utilrand "k8s.io/apimachinery/pkg/util/rand"

	"github.com/vessel-vm/vessel/launcher/libvirtd"
)

// BenchmarkNetwork compares, on one guest's busybox httpd, a direct TCP
// connection to the guest's managed-network address from inside the
// hypervisor's namespace with the same request through kubectl vm
// port-forward (kubectl -> kube-apiserver -> vessel-apiserver -> agent ->
// guest): round trip of a small GET on a fresh connection, and the
// throughput of an 8 MiB GET. It prints the table `make bench-network`
// shows.
//
//	VESSEL_E2E=1 go test -run '^$' -bench Network -benchtime 1x ./e2e/network/
func BenchmarkNetwork(b *testing.B) {
	e := requireEnv(b)
	hv := e.Hypervisors[0]
	vm := e.managedVM(b, "team-a", "bench-"+utilrand.String(4), hv.Name)
	ip := primaryIP(b, vm)
	sh := e.shell(b, vm)
	if _, rc := sh.run(b, "mkdir -p /www && echo ok >/www/small && dd if=/dev/urandom of=/www/big bs=1024 count=8192 2>/dev/null && httpd -p 80 -h /www", time.Minute); rc != 0 {
		b.Fatal("httpd did not start in the guest")
	}
	local := freePort(b)
	_, out := e.startKubectl(b, "alice", "vm", "-n", vm.Namespace, "port-forward", vm.Name, fmt.Sprintf("%d:80", local))
	waitLine(b, out, fmt.Sprintf("Forwarding from 127.0.0.1:%d", local), time.Minute)

	const rounds = 30
	direct := func() (net.Conn, error) {
		var c net.Conn
		err := libvirtd.InNetns(hv.Netns, func() error {
			var err error
			c, err = net.DialTimeout("tcp", net.JoinHostPort(ip.String(), "80"), 10*time.Second)
			return err
		})
		return c, err
	}
	forwarded := func() (net.Conn, error) {
		return net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", local), 10*time.Second)
	}
	type row struct {
		name     string
		p50, p95 time.Duration
		mbps     float64
	}
	var rows []row
	b.ResetTimer()
	for range b.N {
		rows = rows[:0]
		for _, p := range []struct {
			name string
			dial func() (net.Conn, error)
		}{{"direct (in the netns)", direct}, {"kubectl vm port-forward", forwarded}} {
			var rtts []time.Duration
			for range rounds {
				start := time.Now()
				if _, err := get(p.dial, "/small"); err != nil {
					b.Fatalf("%s: %v", p.name, err)
				}
				rtts = append(rtts, time.Since(start))
			}
			start := time.Now()
			n, err := get(p.dial, "/big")
			if err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			d := time.Since(start)
			sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
			rows = append(rows, row{p.name, rtts[len(rtts)/2], rtts[len(rtts)*95/100], float64(n) / d.Seconds() / 1e6})
		}
	}
	b.StopTimer()
	base, pf := rows[0], rows[1]
	var s strings.Builder
	fmt.Fprintf(&s, "\nHTTP to %s/%s (TCG guest, busybox httpd): GET of 3 bytes on a new connection x%d, one GET of 8 MiB\n", vm.Namespace, vm.Name, rounds)
	fmt.Fprintf(&s, "%-26s %10s %10s %10s\n", "path", "RTT p50", "RTT p95", "MB/s")
	for _, r := range rows {
		fmt.Fprintf(&s, "%-26s %10s %10s %10.2f\n", r.name, r.p50.Round(100*time.Microsecond), r.p95.Round(100*time.Microsecond), r.mbps)
	}
	fmt.Fprintf(&s, "port-forward vs direct: RTT p50 %.2fx (+%.1f ms), throughput %.2fx\n",
		float64(pf.p50)/float64(base.p50), float64(pf.p50-base.p50)/1e6, pf.mbps/base.mbps)
	fmt.Print(s.String())
	b.ReportMetric(float64(pf.p50-base.p50)/1e6, "extra-rtt-ms")
	b.ReportMetric(pf.mbps/base.mbps, "throughput-ratio")
}

// get sends one HTTP/1.0 GET on a new connection and returns the body size.
func get(dial func() (net.Conn, error), path string) (int64, error) {
	c, err := dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\n\r\n", path); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return io.Copy(io.Discard, resp.Body)
}
