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
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// Defaults for Config's zero values.
const (
	DefaultRingBytes    = 256 << 10
	DefaultPingInterval = 15 * time.Second
	// DefaultMaxSessions bounds the console sessions of one VM: each holds
	// a connection, goroutines and up to 4 MiB of queued output on the
	// agent, so tenants cannot exhaust the node by attaching in a loop.
	DefaultMaxSessions = 10
	// DefaultClientName is the certificate CN the vessel-apiserver presents.
	DefaultClientName = "vessel-apiserver"
)

// Domains finds the domain of a VM; hypervisor.Hypervisor is one.
type Domains interface {
	Lookup(ctx context.Context, uid string) (*hypervisor.Domain, error)
}

// Config is what a Server needs.
type Config struct {
	// Backend opens console streams.
	Backend Backend
	// Domains checks that a domain belongs to the VM a request names.
	Domains Domains
	// StateDir is the agent's state directory: the virtlogd console log of
	// a VM is vms/<uid>/console.log under it.
	StateDir string
	// RingBytes of recent output are kept per VM.
	RingBytes int
	// PingInterval is how often WebSocket clients are pinged, so proxies
	// with idle timeouts keep quiet sessions open.
	PingInterval time.Duration
	// AllowedClientNames are the client certificate CNs allowed in; empty
	// means DefaultClientName.
	AllowedClientNames []string
	// MaxSessions bounds the sessions attached to one VM's console at
	// once; zero means DefaultMaxSessions. One more is refused with 429.
	MaxSessions int
	// PortForward connects to guests for /portforward; nil refuses it.
	PortForward GuestDialer
	// Extra serves more GET paths to the same clients, such as the per-VM
	// resource usage the vessel-apiserver reads.
	Extra map[string]http.Handler
}

// Server serves consoles and console logs to the vessel-apiserver.
type Server struct {
	cfg     Config
	allowed map[string]bool
	baseCtx context.Context
	stop    context.CancelFunc

	mu     sync.Mutex
	hubs   map[string]*Hub // by VM UID
	closed bool
}

// NewServer builds a server; Serve runs it, Handler serves its requests.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Backend == nil || cfg.Domains == nil {
		return nil, errors.New("console server needs a backend and a domain lookup")
	}
	if cfg.RingBytes <= 0 {
		cfg.RingBytes = DefaultRingBytes
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	names := cfg.AllowedClientNames
	if len(names) == 0 {
		names = []string{DefaultClientName}
	}
	s := &Server{cfg: cfg, allowed: map[string]bool{}, hubs: map[string]*Hub{}}
	for _, n := range names {
		s.allowed[n] = true
	}
	s.baseCtx, s.stop = context.WithCancel(context.Background())
	return s, nil
}

// Handler serves GET|POST /console/{namespace}/{name}/{uid} (a
// remote-command upgrade), GET /logs/{namespace}/{name}/{uid} and the
// Extra paths, to clients whose verified certificate has an allowed CN.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /console/{namespace}/{name}/{uid}", s.serveConsole)
	mux.HandleFunc("POST /console/{namespace}/{name}/{uid}", s.serveConsole)
	mux.HandleFunc("GET /logs/{namespace}/{name}/{uid}", s.serveLogs)
	mux.HandleFunc("GET /portforward/{namespace}/{name}/{uid}", s.servePortForward)
	mux.HandleFunc("POST /portforward/{namespace}/{name}/{uid}", s.servePortForward)
	for path, h := range s.cfg.Extra {
		mux.Handle("GET "+path, h)
	}
	return s.authorize(mux)
}

// authorize lets in only the vessel-apiserver. The TLS layer has already
// verified the certificate chain against the client CA; the CN check
// keeps other certificates from the same CA out.
func (s *Server) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
			writeStatus(w, http.StatusUnauthorized, "Unauthorized", "a verified client certificate is required")
			return
		}
		if cn := r.TLS.PeerCertificates[0].Subject.CommonName; !s.allowed[cn] {
			writeStatus(w, http.StatusForbidden, "Forbidden", fmt.Sprintf("client certificate CN %q may not use the console server", cn))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Serve accepts TLS connections on l until ctx ends, then closes every
// console stream (guests keep running).
func (s *Server) Serve(ctx context.Context, l net.Listener, tlsConfig *tls.Config) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// HTTP/1.1 only: both upgrades hijack the connection.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		BaseContext:  func(net.Listener) context.Context { return ctx },
		ErrorLog:     nil,
	}
	errCh := make(chan error, 1)
	go func() { errCh <- srv.Serve(tls.NewListener(l, tlsConfig)) }()
	select {
	case err := <-errCh:
		s.Close()
		return fmt.Errorf("console server on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	s.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	<-errCh
	return nil
}

// Close ends every console stream and refuses new ones.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	hubs := s.hubs
	s.hubs = map[string]*Hub{}
	s.mu.Unlock()
	for _, h := range hubs {
		h.Close()
	}
	// Ending a stream takes a libvirt round trip; a stuck one is cut off
	// when the base context ends.
	deadline := time.After(5 * time.Second)
	for _, h := range hubs {
		select {
		case <-h.Done():
		case <-deadline:
		}
	}
	s.stop()
}

// vmRef is the VM a request names.
type vmRef struct {
	namespace, name, uid string
}

func (v vmRef) String() string { return v.namespace + "/" + v.name }

func parseRef(r *http.Request) (vmRef, error) {
	ref := vmRef{namespace: r.PathValue("namespace"), name: r.PathValue("name"), uid: r.PathValue("uid")}
	if _, err := uuid.Parse(ref.uid); err != nil {
		return ref, fmt.Errorf("%q is not a VM UID", ref.uid)
	}
	return ref, nil
}

// domain checks the domain with the UID belongs to the VM, so a confused
// caller can never reach another VM's console.
func (s *Server) domain(ctx context.Context, ref vmRef) (*hypervisor.Domain, int, error) {
	d, err := s.cfg.Domains.Lookup(ctx, ref.uid)
	switch {
	case errors.Is(err, hypervisor.ErrNotFound), errors.Is(err, hypervisor.ErrNotOwned):
		return nil, http.StatusNotFound, fmt.Errorf("VM %s has no domain on this host", ref)
	case err != nil:
		return nil, http.StatusServiceUnavailable, fmt.Errorf("look up the domain of VM %s: %w", ref, err)
	case d.Owner.Namespace != ref.namespace || d.Owner.Name != ref.name:
		return nil, http.StatusNotFound, fmt.Errorf("VM %s has no domain on this host (domain %s belongs to %s)", ref, ref.uid, d.Owner.Key())
	}
	return d, 0, nil
}

func (s *Server) serveConsole(w http.ResponseWriter, r *http.Request) {
	ref, err := parseRef(r)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	opts, err := parseAttachOptions(r)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	d, code, err := s.domain(r.Context(), ref)
	if err != nil {
		writeStatus(w, code, reasonFor(code), err.Error())
		return
	}
	if !d.State.Active() {
		writeStatus(w, http.StatusConflict, "Conflict", fmt.Sprintf("VM %s is not running on this host (domain %s)", ref, d.State))
		return
	}
	hub, err := s.hub(ref.uid)
	if err != nil {
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", fmt.Sprintf("open the console of VM %s: %v", ref, err))
		return
	}
	// Attached before the upgrade, so that a refusal is a plain answer the
	// client shows; output meanwhile waits in the session.
	session, err := hub.Attach(opts)
	var tooMany *TooManySessionsError
	switch {
	case errors.As(err, &tooMany):
		writeStatus(w, http.StatusTooManyRequests, "TooManyRequests", fmt.Sprintf("console of VM %s: %v", ref, err))
		return
	case err != nil:
		writeStatus(w, http.StatusConflict, "Conflict", fmt.Sprintf("console of VM %s: %v", ref, err))
		return
	}
	defer session.Leave()
	logger := klog.FromContext(r.Context()).WithValues("vm", ref.String())
	logger.V(2).Info("Console session starting", "tailBytes", opts.TailBytes, "force", opts.Force, "readOnly", opts.ReadOnly)
	if isWebSocket(r) {
		s.serveWebSocket(w, r, session, opts)
	} else {
		s.serveSPDY(w, r, session, opts)
	}
	logger.V(2).Info("Console session ended")
}

func parseAttachOptions(r *http.Request) (AttachOptions, error) {
	var opts AttachOptions
	q := r.URL.Query()
	var err error
	if v := q.Get("tailBytes"); v != "" {
		if opts.TailBytes, err = strconv.ParseInt(v, 10, 64); err != nil || opts.TailBytes < 0 {
			return opts, fmt.Errorf("tailBytes must be a non-negative integer, got %q", v)
		}
	}
	opts.ReadOnlyReason = q.Get("readOnlyReason")
	if opts.ReadOnlyReason != "" {
		opts.ReadOnly = true
	}
	for name, dst := range map[string]*bool{"force": &opts.Force, "readOnly": &opts.ReadOnly} {
		if v := q.Get(name); v != "" {
			if *dst, err = strconv.ParseBool(v); err != nil {
				return opts, fmt.Errorf("%s must be true or false, got %q", name, v)
			}
		}
	}
	if opts.Force && opts.ReadOnly {
		return opts, errors.New("force and readOnly exclude each other")
	}
	return opts, nil
}

// hub returns the VM's hub, opening its console stream when none is open.
// A hub lives until its stream ends (the domain stops) or the server
// closes: with no session attached it keeps recording output for the next
// one and for `kubectl vm logs`.
func (s *Server) hub(uid string) (*Hub, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("the agent is shutting down")
	}
	if h := s.hubs[uid]; h != nil {
		select {
		case <-h.Done():
		default:
			return h, nil
		}
	}
	// Start from the tail of virtlogd's log, so output from before the
	// first attach can be replayed too.
	seed, _ := readTail(s.logPath(uid), s.cfg.RingBytes)
	h := newHub(uid, s.cfg.RingBytes, seed)
	h.maxSessions = s.cfg.MaxSessions
	if err := h.start(s.baseCtx, s.cfg.Backend, s.forget); err != nil {
		return nil, err
	}
	s.hubs[uid] = h
	return h, nil
}

func (s *Server) forget(h *Hub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hubs[h.uid] == h {
		delete(s.hubs, h.uid)
	}
}

// Sessions is how many console sessions are attached now, over all VMs.
func (s *Server) Sessions() int {
	s.mu.Lock()
	hubs := make([]*Hub, 0, len(s.hubs))
	for _, h := range s.hubs {
		hubs = append(hubs, h)
	}
	s.mu.Unlock()
	n := 0
	for _, h := range hubs {
		n += h.Sessions()
	}
	return n
}

// existingHub is the VM's open hub, or nil.
func (s *Server) existingHub(uid string) *Hub {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hubs[uid]
}

func (s *Server) logPath(uid string) string {
	return filepath.Join(s.cfg.StateDir, "vms", uid, "console.log")
}

// readTail reads the last n bytes of a file.
func readTail(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(st.Size()-int64(n), 0)
	return io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
}

func reasonFor(code int) string {
	switch code {
	case http.StatusNotFound:
		return "NotFound"
	case http.StatusConflict:
		return "Conflict"
	case http.StatusBadRequest:
		return "BadRequest"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case http.StatusTooManyRequests:
		return "TooManyRequests"
	}
	return "InternalError"
}
