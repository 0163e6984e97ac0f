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
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Backend opens the serial console of a domain.
type Backend interface {
	// Open starts streaming the serial console of the domain whose UUID is
	// uid: guest output is written to out, guest input is read from in. It
	// returns once the stream is set up, or why it could not be. The stream
	// then runs until in ends (which leaves the guest running), the domain
	// stops or ctx ends; its end is sent once on the returned channel.
	// Writes to out must not block for long: they are made from the
	// connection's receive path.
	Open(ctx context.Context, uid string, in io.Reader, out io.Writer) (<-chan error, error)
}

// AttachOptions say how a session joins a hub.
type AttachOptions struct {
	// TailBytes of recent output are replayed before live output.
	TailBytes int64
	// Force takes the input over from the session holding it.
	Force bool
	// ReadOnly sessions never hold the input.
	ReadOnly bool
	// ReadOnlyReason, when set, says why the vessel-apiserver made the
	// session read-only (its user may not create virtualmachines/console);
	// the session then reads its input only to tell the user so.
	ReadOnlyReason string
}

// TooManySessionsError refuses a session beyond a VM's limit.
type TooManySessionsError struct {
	Max int
}

func (e *TooManySessionsError) Error() string {
	return fmt.Sprintf("the VM already has %d console sessions, the most its agent allows: close one (or ask its operator to raise --max-console-sessions)", e.Max)
}

// maxPending bounds the output queued for one session. A client that falls
// further behind is dropped rather than slowing the guest and every other
// viewer down.
const maxPending = 4 << 20

// coalesceOutput is how long a session gathers output that keeps coming
// before its next write.
const coalesceOutput = 2 * time.Millisecond

// ErrLagged ends a session whose client does not keep up with the output.
var ErrLagged = fmt.Errorf("the console output got more than %d MiB ahead of this session; attach again", maxPending>>20)

// StreamEndedError says the console stream of a VM ended: the VM stopped or
// restarted, libvirtd went away, or the agent shut down.
type StreamEndedError struct {
	UID string
	Err error // nil when the stream ended cleanly
}

func (e *StreamEndedError) Error() string {
	if e.Err == nil {
		return "the console stream ended (the VM stopped, or the agent closed it)"
	}
	return fmt.Sprintf("the console stream ended: %v", e.Err)
}

func (e *StreamEndedError) Unwrap() error { return e.Err }

// Hub owns the one console stream of a VM.
type Hub struct {
	uid string
	// maxSessions bounds the sessions attached at once; 0 means no bound.
	maxSessions int

	mu       sync.Mutex
	ring     *Ring
	sessions []*Session // in attach order
	holder   *Session   // holds the input, or nil
	nextID   int
	closed   bool
	err      error // why the stream ended, once closed
	done     chan struct{}

	inMu   sync.Mutex // serializes input writes
	inR    *io.PipeReader
	inW    *io.PipeWriter
	cancel context.CancelFunc
}

func newHub(uid string, ringBytes int, seed []byte) *Hub {
	h := &Hub{uid: uid, ring: NewRing(ringBytes), done: make(chan struct{}), cancel: func() {}}
	h.ring.Write(seed)
	h.inR, h.inW = io.Pipe()
	return h
}

// start opens the stream; ended is called once when it ends.
func (h *Hub) start(ctx context.Context, b Backend, ended func(*Hub)) error {
	ctx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	done, err := b.Open(ctx, h.uid, h.inR, hubOutput{h})
	if err != nil {
		cancel()
		return err
	}
	go func() {
		err := <-done
		h.end(err)
		if ended != nil {
			ended(h)
		}
	}()
	return nil
}

// hubOutput is the guest output side of a hub.
type hubOutput struct{ h *Hub }

// Write records guest output in the ring and queues it for every session.
// It never blocks on a client.
func (o hubOutput) Write(p []byte) (int, error) {
	h := o.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return len(p), nil
	}
	h.ring.Write(p)
	var lagged []*Session
	for _, s := range h.sessions {
		if !s.deliver(p) {
			lagged = append(lagged, s)
		}
	}
	for _, s := range lagged {
		h.removeLocked(s)
	}
	return len(p), nil
}

// Attach adds a session. Its output starts with opts.TailBytes of recent
// output, then everything the guest writes from now on.
func (h *Hub) Attach(opts AttachOptions) (*Session, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, h.err
	}
	if h.maxSessions > 0 && len(h.sessions) >= h.maxSessions {
		return nil, &TooManySessionsError{Max: h.maxSessions}
	}
	h.nextID++
	s := &Session{hub: h, id: h.nextID, readOnly: opts.ReadOnly, readOnlyReason: opts.ReadOnlyReason, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if opts.TailBytes > 0 {
		s.pending = h.ring.Tail(int(min(opts.TailBytes, int64(h.ring.Cap()))))
	}
	switch {
	case opts.ReadOnly:
	case h.holder == nil:
		h.holder = s
	case opts.Force:
		h.holder.noticeLocked("another session took over the console input; you are watching now")
		h.holder = s
	}
	h.sessions = append(h.sessions, s)
	return s, nil
}

// Tail is a copy of the last n bytes of output (all held when n <= 0).
func (h *Hub) Tail(n int) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ring.Tail(n)
}

// Sessions is how many sessions are attached.
func (h *Hub) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// Done is closed when the stream has ended.
func (h *Hub) Done() <-chan struct{} { return h.done }

// Close ends the stream by ending its input, which leaves the guest running.
func (h *Hub) Close() {
	h.inMu.Lock()
	_ = h.inW.Close()
	h.inMu.Unlock()
}

// input feeds p to the guest when s holds the input.
func (h *Hub) input(s *Session, p []byte) error {
	h.mu.Lock()
	holds, closed := h.holder == s, h.closed
	if !holds && !closed {
		switch {
		case s.readOnlyReason != "":
			s.noticeOnceLocked("this session is read-only (" + s.readOnlyReason + "): input is ignored")
		case s.readOnly:
			s.noticeOnceLocked("this session is read-only: input is ignored")
		default:
			s.noticeOnceLocked("another session holds the console input; attach with --force to take it over")
		}
	}
	h.mu.Unlock()
	if !holds || closed {
		return nil
	}
	h.inMu.Lock()
	defer h.inMu.Unlock()
	if _, err := h.inW.Write(p); err != nil {
		return fmt.Errorf("write console input: %w", err)
	}
	return nil
}

// detach removes s; the input passes to the longest attached session that
// may hold it.
func (h *Hub) detach(s *Session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(s)
}

func (h *Hub) removeLocked(s *Session) {
	for i, other := range h.sessions {
		if other == s {
			h.sessions = append(h.sessions[:i:i], h.sessions[i+1:]...)
			break
		}
	}
	if h.holder != s {
		return
	}
	h.holder = nil
	for _, other := range h.sessions {
		if !other.readOnly {
			h.holder = other
			other.noticeLocked("you hold the console input now")
			break
		}
	}
}

// end closes every session with the reason the stream ended.
func (h *Hub) end(err error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	h.closed = true
	h.err = &StreamEndedError{UID: h.uid, Err: err}
	sessions := h.sessions
	h.sessions, h.holder = nil, nil
	for _, s := range sessions {
		s.closeLocked(h.err)
	}
	h.mu.Unlock()
	_ = h.inR.CloseWithError(io.EOF)
	h.cancel()
	close(h.done)
}

// Session is one client attached to a hub.
type Session struct {
	hub            *Hub
	id             int
	readOnly       bool
	readOnlyReason string
	wake           chan struct{}
	done           chan struct{}

	// Guarded by hub.mu.
	pending []byte
	closed  bool
	err     error
	noticed bool
}

// deliver queues p; false when the session fell too far behind and was
// closed. Called with hub.mu held.
func (s *Session) deliver(p []byte) bool {
	if s.closed {
		return true
	}
	if len(s.pending)+len(p) > maxPending {
		s.closeLocked(ErrLagged)
		return false
	}
	s.pending = append(s.pending, p...)
	s.signal()
	return true
}

func (s *Session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// noticeLocked tells this session's client something, in its output only.
func (s *Session) noticeLocked(msg string) {
	if s.closed {
		return
	}
	s.pending = append(s.pending, "\r\n[vessel: "+msg+"]\r\n"...)
	s.signal()
}

func (s *Session) noticeOnceLocked(msg string) {
	if !s.noticed {
		s.noticed = true
		s.noticeLocked(msg)
	}
}

func (s *Session) closeLocked(err error) {
	if s.closed {
		return
	}
	s.closed, s.err = true, err
	close(s.done)
}

// Leave detaches the session; Serve does so when it returns, so only a
// session that is never served needs it. It may be called more than once.
func (s *Session) Leave() { s.hub.detach(s) }

// Serve copies the session's output to stdout and, when it holds the
// input, stdin to the guest. It returns when the client leaves (stdin
// ends, stdout fails or ctx ends), with nil, or when the stream ends or
// the client lags, with why; output queued before that is written first.
// stdin may be nil for a client that sends nothing.
func (s *Session) Serve(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	defer s.hub.detach(s)
	left := make(chan struct{})
	if stdin != nil {
		go func() {
			defer close(left)
			buf := make([]byte, 32<<10)
			for {
				n, err := stdin.Read(buf)
				if n > 0 {
					if s.hub.input(s, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	for {
		s.hub.mu.Lock()
		out := s.pending
		s.pending = nil
		closed, err := s.closed, s.err
		s.hub.mu.Unlock()
		if len(out) > 0 {
			if _, werr := stdout.Write(out); werr != nil {
				return nil
			}
			// A serial port delivers a few bytes at a time; while output
			// keeps coming, gather it for a moment rather than sending
			// every few bytes through each proxy on the way. The first
			// output after a quiet spell (a keystroke's echo) goes at once.
			select {
			case <-time.After(coalesceOutput):
			case <-s.done:
			case <-left:
				return nil
			case <-ctx.Done():
				return nil
			}
			continue
		}
		if closed {
			return err
		}
		select {
		case <-s.wake:
		case <-s.done:
		case <-left:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
