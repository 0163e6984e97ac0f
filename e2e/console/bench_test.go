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

package console

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/console"
)

// Sizes of the measurements; override with VESSEL_BENCH_KEYS and
// VESSEL_BENCH_BYTES. VESSEL_BENCH_PATHS=<substring> measures only the
// paths whose name contains it.
const (
	benchKeys = 200
	// benchRandomBytes of random data are printed base64-encoded: about
	// 4/3 of it, plus line ends, crosses the console.
	benchRandomBytes = 1500000
)

// BenchmarkConsole measures, on one running guest, keystroke echo round
// trips (one byte to the guest, its echo back) and bulk output (the guest
// prints about 2 MB of base64) three ways in the same run: on the libvirt
// console stream itself, on the agent's stream server (client-go
// WebSocket executor, mTLS), and through the full path a user takes
// (client-go remotecommand -> kube-apiserver -> vessel-apiserver -> agent
// -> libvirt). It prints a table and reports the full path's numbers.
//
//	VESSEL_E2E=1 go test -run '^$' -bench Console -benchtime 1x ./e2e/console/
func BenchmarkConsole(b *testing.B) {
	e := requireEnv(b)
	vm := e.RunningVM(b, "team-a", uniqueName("bench"))
	keys := envInt("VESSEL_BENCH_KEYS", benchKeys)
	randomBytes := envInt("VESSEL_BENCH_BYTES", benchRandomBytes)

	paths := []struct {
		name string
		open func(testing.TB) *benchConn
	}{
		{"libvirt stream", func(tb testing.TB) *benchConn { return openLibvirt(tb, e.HypervisorOf(tb, vm).Socket(), vm) }},
		{"agent (mTLS WebSocket)", func(tb testing.TB) *benchConn { return e.openAgent(tb, vm) }},
		{"full path (kube-apiserver)", func(tb testing.TB) *benchConn { return e.openFull(tb, vm) }},
	}
	if only := os.Getenv("VESSEL_BENCH_PATHS"); only != "" {
		paths = slices.DeleteFunc(paths, func(p struct {
			name string
			open func(testing.TB) *benchConn
		}) bool {
			return !strings.Contains(p.name, only)
		})
	}
	type row struct {
		name     string
		p50, p99 time.Duration
		mbps     float64
		bytes    int
		writes   int
	}
	var rows []row
	b.ResetTimer()
	for range b.N {
		rows = rows[:0]
		for _, p := range paths {
			c := p.open(b)
			c.prompt(b)
			rtts := c.echoRTTs(b, keys)
			n, writes, d := c.bulk(b, randomBytes)
			c.close()
			rows = append(rows, row{p.name, percentile(rtts, 50), percentile(rtts, 99), float64(n) / d.Seconds() / 1e6, n, writes})
		}
	}
	b.StopTimer()

	base := rows[0]
	var out strings.Builder
	fmt.Fprintf(&out, "\nconsole of %s/%s (TCG guest), %d keystrokes, %.1f MB of base64 output\n", vm.Namespace, vm.Name, keys, float64(base.bytes)/1e6)
	fmt.Fprintf(&out, "%-28s %10s %10s %10s %14s %16s %12s\n", "path", "echo p50", "echo p99", "MB/s", "p50 vs libvirt", "MB/s vs libvirt", "bytes/write")
	for _, r := range rows {
		fmt.Fprintf(&out, "%-28s %10s %10s %10.3f %13.2fx %15.2fx %12.0f\n", r.name,
			r.p50.Round(100*time.Microsecond), r.p99.Round(100*time.Microsecond), r.mbps,
			float64(r.p50)/float64(base.p50), r.mbps/base.mbps, float64(r.bytes)/float64(max(r.writes, 1)))
	}
	fmt.Print(out.String())
	full := rows[len(rows)-1]
	b.ReportMetric(float64(full.p50.Microseconds())/1000, "echo-p50-ms")
	b.ReportMetric(float64(full.p99.Microseconds())/1000, "echo-p99-ms")
	b.ReportMetric(full.mbps, "MB/s")
	b.ReportMetric(float64(base.p50.Microseconds())/1000, "libvirt-echo-p50-ms")
	b.ReportMetric(base.mbps, "libvirt-MB/s")
}

// benchConn is one console connection: input to the guest, accumulated
// output from it.
type benchConn struct {
	in     io.WriteCloser
	stop   func()
	ended  chan struct{} // closed when the stream ends
	mu     sync.Mutex
	out    []byte
	writes int
	grown  chan struct{}
}

func newBenchConn() *benchConn {
	return &benchConn{grown: make(chan struct{}, 1), ended: make(chan struct{})}
}

func (c *benchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.out = append(c.out, p...)
	c.writes++
	c.mu.Unlock()
	select {
	case c.grown <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *benchConn) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.out)
}

func (c *benchConn) send(tb testing.TB, s string) {
	tb.Helper()
	if _, err := c.in.Write([]byte(s)); err != nil {
		tb.Fatalf("send %q: %v", s, err)
	}
}

// waitFrom waits until want appears in the output after offset from.
func (c *benchConn) waitFrom(tb testing.TB, from int, want string, timeout time.Duration) {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		found := strings.Contains(string(c.out[from:]), want)
		c.mu.Unlock()
		if found {
			return
		}
		select {
		case <-c.grown:
		case <-c.ended:
			c.mu.Lock()
			found := strings.Contains(string(c.out[from:]), want)
			c.mu.Unlock()
			if !found {
				tb.Fatalf("the console stream ended before %q arrived", want)
			}
		case <-deadline.C:
			c.mu.Lock()
			got := string(c.out[max(from, len(c.out)-500):])
			c.mu.Unlock()
			tb.Fatalf("no %q within %s; last output %q", want, timeout, got)
		}
	}
}

// quiet waits until no output came for d.
func (c *benchConn) quiet(d time.Duration) {
	for {
		select {
		case <-c.grown:
		case <-time.After(d):
			return
		}
	}
}

func (c *benchConn) close() {
	c.in.Close()
	c.stop()
}

// prompt gets a fresh shell prompt.
func (c *benchConn) prompt(tb testing.TB) {
	tb.Helper()
	mark := c.len()
	c.send(tb, "\r")
	c.waitFrom(tb, mark, "# ", 30*time.Second)
	c.quiet(300 * time.Millisecond)
}

// echoRTTs types n keys one at a time, each after the previous one's echo,
// and returns the round trips. The line is cleared now and then (Ctrl+U),
// outside the measurement.
func (c *benchConn) echoRTTs(tb testing.TB, n int) []time.Duration {
	tb.Helper()
	rtts := make([]time.Duration, 0, n)
	for i := range n {
		if i > 0 && i%50 == 0 {
			c.send(tb, "\x15")
			c.quiet(200 * time.Millisecond)
		}
		mark := c.len()
		start := time.Now()
		c.send(tb, "x")
		c.waitFrom(tb, mark, "x", 10*time.Second)
		rtts = append(rtts, time.Since(start))
	}
	c.send(tb, "\x15")
	c.quiet(200 * time.Millisecond)
	return rtts
}

// bulk has the guest print randomBytes of random data in base64 and
// returns how many bytes arrived, in how many writes, and how long it took.
func (c *benchConn) bulk(tb testing.TB, randomBytes int) (int, int, time.Duration) {
	tb.Helper()
	mark := c.len()
	c.mu.Lock()
	writes := c.writes
	c.mu.Unlock()
	start := time.Now()
	// The end marker is computed so the echoed command line does not match.
	c.send(tb, fmt.Sprintf("head -c %d /dev/urandom | base64; echo BULK-$((40+2))-END\r", randomBytes))
	c.waitFrom(tb, mark, "BULK-42-END", 10*time.Minute)
	d := time.Since(start)
	c.mu.Lock()
	n, writes := len(c.out)-mark, c.writes-writes
	c.mu.Unlock()
	c.quiet(300 * time.Millisecond)
	return n, writes, d
}

// openLibvirt opens vm's console straight from the libvirtd at socket.
func openLibvirt(tb testing.TB, socket string, vm *v1alpha1.VirtualMachine) *benchConn {
	tb.Helper()
	c := newBenchConn()
	r, w := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done, err := (&console.Libvirt{Socket: socket}).Open(ctx, string(vm.UID), r, c)
	if err != nil {
		tb.Fatalf("open the libvirt console: %v", err)
	}
	ended := make(chan error, 1)
	go func() { ended <- <-done; close(c.ended) }()
	c.in = w
	c.stop = func() {
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
		}
		cancel()
	}
	return c
}

// openAgent attaches to the agent's stream server directly, as the
// vessel-apiserver does.
func (e *env) openAgent(tb testing.TB, vm *v1alpha1.VirtualMachine) *benchConn {
	tb.Helper()
	hv, err := e.Admin.VesselV1alpha1().Hypervisors().Get(context.Background(), vm.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	pki := e.Cluster.PKI
	cfg := &rest.Config{
		Host:            "https://" + hv.Status.DaemonEndpoint,
		TLSClientConfig: rest.TLSClientConfig{CAFile: pki.AgentCA.CertFile, CertFile: pki.AgentClient.CertFile, KeyFile: pki.AgentClient.KeyFile},
	}
	url := fmt.Sprintf("https://%s/console/%s/%s/%s", hv.Status.DaemonEndpoint, vm.Namespace, vm.Name, vm.UID)
	return stream(tb, cfg, url)
}

// openFull attaches through kube-apiserver, as kubectl vm console does.
func (e *env) openFull(tb testing.TB, vm *v1alpha1.VirtualMachine) *benchConn {
	tb.Helper()
	cfg, err := e.Cluster.AdminConfig()
	if err != nil {
		tb.Fatal(err)
	}
	url := e.Admin.VesselV1alpha1().RESTClient().Post().Namespace(vm.Namespace).Resource("virtualmachines").
		Name(vm.Name).SubResource("console").URL()
	return stream(tb, cfg, url.String())
}

func stream(tb testing.TB, cfg *rest.Config, url string) *benchConn {
	tb.Helper()
	exec, err := remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, url)
	if err != nil {
		tb.Fatal(err)
	}
	c := newBenchConn()
	r, w := io.Pipe()
	c.in = w
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: r, Stdout: c, Tty: true})
	}()
	c.stop = func() {
		// Ending stdin ends the session: the server reports the end and
		// closes the stream.
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("session to %s ended with %v", url, err)
			}
		case <-time.After(5 * time.Second):
			tb.Errorf("session to %s did not end within 5s of its stdin", url)

		}
		cancel()
	}
	return c
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err == nil && v > 0 {
		return v
	}
	return def
}
