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
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRing(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		writes []string
		tail   int
		want   string
	}{
		{"empty", 8, nil, 4, ""},
		{"partial", 8, []string{"abc"}, 0, "abc"},
		{"tail of partial", 8, []string{"abcdef"}, 2, "ef"},
		{"exactly full", 4, []string{"ab", "cd"}, 0, "abcd"},
		{"wraps", 4, []string{"abc", "def"}, 0, "cdef"},
		{"wraps, tail", 4, []string{"abc", "def"}, 3, "def"},
		{"one write larger than the ring", 4, []string{"x", "0123456789"}, 0, "6789"},
		{"many small writes", 5, strings.Split("abcdefghijklm", ""), 0, "ijklm"},
		{"tail larger than held", 8, []string{"abc"}, 100, "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRing(tt.size)
			for _, w := range tt.writes {
				if n, err := r.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := string(r.Tail(tt.tail)); got != tt.want {
				t.Errorf("Tail(%d) = %q, want %q", tt.tail, got, tt.want)
			}
			if r.Len() > tt.size {
				t.Errorf("Len() = %d > size %d", r.Len(), tt.size)
			}
		})
	}
}

// fakeConsole is a console stream: the test writes guest output and reads
// what the guest received.
type fakeConsole struct {
	mu      sync.Mutex
	out     io.Writer
	guestIn bytes.Buffer
	opens   int
	done    chan error
	inEnded chan struct{}
}

func newFakeConsole() *fakeConsole {
	return &fakeConsole{done: make(chan error, 1), inEnded: make(chan struct{})}
}

func (f *fakeConsole) Open(ctx context.Context, uid string, in io.Reader, out io.Writer) (<-chan error, error) {
	f.mu.Lock()
	f.out = out
	f.opens++
	f.mu.Unlock()
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := in.Read(buf)
			f.mu.Lock()
			f.guestIn.Write(buf[:n])
			f.mu.Unlock()
			if err != nil {
				close(f.inEnded)
				// Ending the input ends the stream, as with libvirt.
				select {
				case f.done <- nil:
				default:
				}
				return
			}
		}
	}()
	return f.done, nil
}

func (f *fakeConsole) emit(s string) {
	f.mu.Lock()
	out := f.out
	f.mu.Unlock()
	_, _ = out.Write([]byte(s))
}

func (f *fakeConsole) received() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.guestIn.String()
}

// syncBuffer is a client's terminal.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// client is one attached session driven by the test.
type client struct {
	t      *testing.T
	name   string
	stdin  *io.PipeWriter
	out    *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

func attach(t *testing.T, h *Hub, name string, opts AttachOptions) *client {
	t.Helper()
	s, err := h.Attach(opts)
	if err != nil {
		t.Fatalf("attach %s: %v", name, err)
	}
	r, w := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	c := &client{t: t, name: name, stdin: w, out: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- s.Serve(ctx, r, c.out) }()
	t.Cleanup(func() { cancel(); w.Close() })
	return c
}

func (c *client) typeIn(s string) {
	c.t.Helper()
	if _, err := c.stdin.Write([]byte(s)); err != nil {
		c.t.Fatalf("%s types %q: %v", c.name, s, err)
	}
}

func (c *client) waitOutput(want string) {
	c.t.Helper()
	eventually(c.t, func() bool { return strings.Contains(c.out.String(), want) },
		"%s to see %q; it saw %d bytes ending in %q", c.name, want, func() string { return fmt.Sprint(c.outLen()) },
		func() string { out := c.out.String(); return out[max(0, len(out)-200):] })
}

func (c *client) outLen() int { return len(c.out.String()) }

func (c *client) leave() error {
	c.t.Helper()
	c.cancel()
	return c.wait()
}

func (c *client) wait() error {
	c.t.Helper()
	select {
	case err := <-c.done:
		return err
	case <-time.After(5 * time.Second):
		c.t.Fatalf("%s's session did not end", c.name)
		return nil
	}
}

func eventually(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for i, a := range args {
				if f, ok := a.(func() string); ok {
					args[i] = f()
				}
			}
			t.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startHub(t *testing.T, seed string) (*Hub, *fakeConsole) {
	t.Helper()
	f := newFakeConsole()
	h := newHub("0b7f9c1e-3a0b-4c55-9d55-3c1a3b0f0a11", 64, []byte(seed))
	if err := h.start(context.Background(), f, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h, f
}

func TestHubFansOutputToEverySession(t *testing.T) {
	h, f := startHub(t, "")
	alice := attach(t, h, "alice", AttachOptions{})
	bob := attach(t, h, "bob", AttachOptions{})
	f.emit("login: ")
	alice.waitOutput("login: ")
	bob.waitOutput("login: ")

	if err := bob.leave(); err != nil {
		t.Errorf("bob's session ended with %v, want nil", err)
	}
	f.emit("still here")
	alice.waitOutput("still here")
	if got := h.Sessions(); got != 1 {
		t.Errorf("Sessions() = %d after one left, want 1", got)
	}
}

func TestHubReplaysTailBeforeLiveOutput(t *testing.T) {
	h, f := startHub(t, "boot log\n")
	f.emit("0123456789")
	c := attach(t, h, "viewer", AttachOptions{TailBytes: 4})
	f.emit("LIVE")
	c.waitOutput("LIVE")
	if got := c.out.String(); got != "6789LIVE" {
		t.Errorf("output = %q, want the last 4 bytes then live output %q", got, "6789LIVE")
	}

	seeded := attach(t, h, "seeded", AttachOptions{TailBytes: 1 << 20})
	seeded.waitOutput("LIVE")
	if got := seeded.out.String(); got != "boot log\n0123456789LIVE" {
		t.Errorf("tail larger than the ring = %q, want everything held, seed first", got)
	}

	none := attach(t, h, "no tail", AttachOptions{})
	f.emit("next")
	none.waitOutput("next")
	if got := none.out.String(); got != "next" {
		t.Errorf("tailBytes 0 replayed %q, want only live output", got)
	}
}

func TestHubInputBelongsToTheFirstSession(t *testing.T) {
	h, f := startHub(t, "")
	first := attach(t, h, "first", AttachOptions{})
	second := attach(t, h, "second", AttachOptions{})

	first.typeIn("ls\r")
	eventually(t, func() bool { return f.received() == "ls\r" }, "the guest to receive the first session's input, got %q", f.received)

	second.typeIn("reboot\r")
	second.waitOutput("another session holds the console input")
	first.typeIn("pwd\r")
	eventually(t, func() bool { return f.received() == "ls\rpwd\r" }, "only the first session's input, got %q", f.received)
	if strings.Contains(first.out.String(), "holds the console input") {
		t.Errorf("the notice went to the first session too: %q", first.out.String())
	}

	// When the holder leaves, the input passes on.
	if err := first.leave(); err != nil {
		t.Fatal(err)
	}
	second.waitOutput("you hold the console input now")
	second.typeIn("id\r")
	eventually(t, func() bool { return f.received() == "ls\rpwd\rid\r" }, "the second session's input after the first left, got %q", f.received)
}

func TestHubForceTakesInputOver(t *testing.T) {
	h, f := startHub(t, "")
	first := attach(t, h, "first", AttachOptions{})
	forcer := attach(t, h, "forcer", AttachOptions{Force: true})
	first.waitOutput("another session took over the console input")

	first.typeIn("x")
	forcer.typeIn("y")
	eventually(t, func() bool { return f.received() == "y" }, "only the forcing session's input, got %q", f.received)

	// The first session is not kicked: it still sees output.
	f.emit("both see this")
	first.waitOutput("both see this")
	forcer.waitOutput("both see this")
}

func TestHubReadOnlyNeverHoldsInput(t *testing.T) {
	h, f := startHub(t, "")
	watcher := attach(t, h, "watcher", AttachOptions{ReadOnly: true})
	watcher.typeIn("rm -rf /\r")
	watcher.waitOutput("read-only")
	typist := attach(t, h, "typist", AttachOptions{})
	typist.typeIn("uptime\r")
	eventually(t, func() bool { return f.received() == "uptime\r" }, "the typist's input only, got %q", f.received)

	// Nor does it inherit the input when the holder leaves.
	if err := typist.leave(); err != nil {
		t.Fatal(err)
	}
	watcher.typeIn("x")
	time.Sleep(50 * time.Millisecond)
	if got := f.received(); got != "uptime\r" {
		t.Errorf("guest received %q after the read-only session typed", got)
	}
}

func TestHubEndOfStreamEndsSessionsAfterTheirOutput(t *testing.T) {
	h, f := startHub(t, "")
	c := attach(t, h, "viewer", AttachOptions{})
	f.emit("reboot: Power down\r\n")
	f.done <- errors.New("domain shut off")
	err := c.wait()
	var ended *StreamEndedError
	if !errors.As(err, &ended) || !strings.Contains(err.Error(), "domain shut off") {
		t.Errorf("session ended with %v, want a StreamEndedError saying why", err)
	}
	if !strings.Contains(c.out.String(), "Power down") {
		t.Errorf("the last output was lost: %q", c.out.String())
	}
	if _, err := h.Attach(AttachOptions{}); !errors.As(err, &ended) {
		t.Errorf("Attach after the end = %v, want the StreamEndedError", err)
	}
}

func TestHubCloseEndsTheStreamThroughItsInput(t *testing.T) {
	h, f := startHub(t, "")
	c := attach(t, h, "viewer", AttachOptions{})
	h.Close()
	select {
	case <-f.inEnded:
	case <-time.After(5 * time.Second):
		t.Fatal("closing the hub did not end the stream's input")
	}
	var ended *StreamEndedError
	if err := c.wait(); !errors.As(err, &ended) || ended.Err != nil {
		t.Errorf("session ended with %v, want a clean StreamEndedError", err)
	}
}

// blockedWriter is a client that stopped reading.
type blockedWriter struct{ release chan struct{} }

func (b blockedWriter) Write(p []byte) (int, error) {
	<-b.release
	return 0, io.ErrClosedPipe
}

func TestHubDropsASessionThatFallsBehind(t *testing.T) {
	h, f := startHub(t, "")
	fast := attach(t, h, "fast", AttachOptions{})

	stuck := blockedWriter{release: make(chan struct{})}
	defer close(stuck.release)
	s, err := h.Attach(AttachOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	slowDone := make(chan error, 1)
	go func() { slowDone <- s.Serve(context.Background(), nil, stuck) }()

	chunk := strings.Repeat("x", 64<<10)
	for sent := len(chunk); sent <= 2*maxPending; sent += len(chunk) {
		f.emit(chunk) // must never block on the stuck client
		// The fast client keeps up (on a loaded machine it could fall
		// behind too and be dropped, which is right but not this test).
		eventually(t, func() bool { return fast.outLen() >= sent }, "fast to read %d bytes", sent)
	}
	f.emit("END")
	fast.waitOutput("END")
	eventually(t, func() bool { return h.Sessions() == 1 }, "the stuck session to be dropped")
	stuck.release <- struct{}{}
	select {
	case err := <-slowDone:
		if !errors.Is(err, ErrLagged) && err != nil {
			t.Errorf("stuck session ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stuck session's Serve did not return")
	}
}
