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
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// testPKI is what the launcher's PKI has for the console path: a CA, the
// agent's serving certificate for 127.0.0.1, and the vessel-apiserver's
// client certificate; plus certificates that must be refused.
type testPKI struct {
	dir                         string
	caPEM                       []byte
	serverCert, serverKey       string // files
	client, stranger, foreignCA keyPairPEM
}

type keyPairPEM struct{ cert, key []byte }

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	ca, caKey := selfSignedCA(t, "vessel-agent-ca")
	p.caPEM = pemCert(ca.Raw)
	server := issue(t, ca, caKey, "vessel-agent", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	p.serverCert, p.serverKey = filepath.Join(p.dir, "server.crt"), filepath.Join(p.dir, "server.key")
	write(t, p.serverCert, server.cert)
	write(t, p.serverKey, server.key)
	write(t, filepath.Join(p.dir, "ca.crt"), p.caPEM)
	p.client = issue(t, ca, caKey, DefaultClientName, x509.ExtKeyUsageClientAuth, nil)
	p.stranger = issue(t, ca, caKey, "mallory", x509.ExtKeyUsageClientAuth, nil)
	other, otherKey := selfSignedCA(t, "some-other-ca")
	p.foreignCA = issue(t, other, otherKey, DefaultClientName, x509.ExtKeyUsageClientAuth, nil)
	return p
}

func selfSignedCA(t testing.TB, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

var serial int64 = 100

func issue(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usage x509.ExtKeyUsage, ips []net.IP) keyPairPEM {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return keyPairPEM{cert: pemCert(der), key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func write(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// echoGuest is a console whose guest echoes what it is sent, like a shell
// on a terminal, and answers "ping" with "pong".
type echoGuest struct {
	mu   sync.Mutex
	outs []io.Writer
}

func (g *echoGuest) Open(ctx context.Context, uid string, in io.Reader, out io.Writer) (<-chan error, error) {
	g.mu.Lock()
	g.outs = append(g.outs, out)
	g.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				data := string(buf[:n])
				_, _ = out.Write([]byte(data))
				if strings.Contains(data, "ping") {
					_, _ = out.Write([]byte("\r\npong\r\n"))
				}
			}
			if err != nil {
				done <- nil
				return
			}
		}
	}()
	return done, nil
}

// say writes guest output on every console opened.
func (g *echoGuest) say(s string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, out := range g.outs {
		_, _ = out.Write([]byte(s))
	}
}

type fakeDomains map[string]*hypervisor.Domain

func (f fakeDomains) Lookup(_ context.Context, uid string) (*hypervisor.Domain, error) {
	if d, ok := f[uid]; ok {
		return d, nil
	}
	return nil, hypervisor.ErrNotFound
}

const (
	runningUID = "6f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f"
	stoppedUID = "7a1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f"
)

type testServer struct {
	pki    *testPKI
	addr   string
	guest  *echoGuest
	server *Server
}

func startServer(t *testing.T, ping time.Duration) *testServer {
	t.Helper()
	return startServerWith(t, ping, func(*Config) {})
}

// startServerWith is startServer with changes to the server's Config.
func startServerWith(t *testing.T, ping time.Duration, change func(*Config)) *testServer {
	t.Helper()
	pki := newTestPKI(t)
	guest := &echoGuest{}
	stateDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(stateDir, "vms", stoppedUID), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(stateDir, "vms", stoppedUID, "console.log"), []byte("VESSEL-GUEST READY\nKernel panic - not syncing\n"))
	cfg := Config{
		Backend: guest,
		Domains: fakeDomains{
			runningUID: {UUID: runningUID, State: hypervisor.StateRunning, Owner: hypervisor.Owner{Namespace: "team-a", Name: "demo", UID: runningUID}},
			stoppedUID: {UUID: stoppedUID, State: hypervisor.StateShutoff, Owner: hypervisor.Owner{Namespace: "team-a", Name: "crashed", UID: stoppedUID}},
		},
		StateDir:     stateDir,
		PingInterval: ping,
	}
	change(&cfg)
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig, err := TLSConfig(pki.serverCert, pki.serverKey, filepath.Join(pki.dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, tlsConfig) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{pki: pki, addr: ln.Addr().String(), guest: guest, server: srv}
}

func (s *testServer) config(addr string, client keyPairPEM) *restclient.Config {
	return &restclient.Config{
		Host: "https://" + addr,
		TLSClientConfig: restclient.TLSClientConfig{
			CAData: s.pki.caPEM, CertData: client.cert, KeyData: client.key,
			// The proxy in between is dialed as 127.0.0.1: the agent's
			// certificate names that address.
		},
	}
}

// session is a remote-command client attached through a client-go executor.
type session struct {
	t      *testing.T
	name   string
	stdin  *io.PipeWriter
	out    *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

func (s *testServer) attach(t *testing.T, name, addr string, client keyPairPEM, query string, spdy bool) *session {
	t.Helper()
	cfg := s.config(addr, client)
	url := "https://" + addr + "/console/team-a/demo/" + runningUID + query
	var exec remotecommand.Executor
	var err error
	if spdy {
		exec, err = remotecommand.NewSPDYExecutor(cfg, http.MethodPost, mustParse(t, url))
	} else {
		exec, err = remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, url)
	}
	if err != nil {
		t.Fatal(err)
	}
	r, w := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{t: t, name: name, stdin: w, out: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	var stdin io.Reader = r
	if strings.Contains(query, "readOnly=true") {
		stdin = nil
	}
	go func() {
		ss.done <- exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: ss.out, Tty: true})
	}()
	t.Cleanup(func() { cancel(); w.Close() })
	return ss
}

// waitSessions waits until n sessions are attached to the running VM.
func (s *testServer) waitSessions(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h := s.server.existingHub(runningUID)
		if h != nil && h.Sessions() == n {
			return
		}
		if time.Now().After(deadline) {
			got := 0
			if h != nil {
				got = h.Sessions()
			}
			t.Fatalf("%d sessions attached, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (ss *session) typeIn(s string) {
	ss.t.Helper()
	done := make(chan error, 1)
	go func() { _, err := ss.stdin.Write([]byte(s)); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			ss.t.Fatalf("%s types %q: %v", ss.name, s, err)
		}
	case err := <-ss.done:
		ss.t.Fatalf("%s's session ended before typing %q: %v", ss.name, s, err)
	case <-time.After(5 * time.Second):
		ss.t.Fatalf("%s could not type %q", ss.name, s)
	}
}

func (ss *session) waitOutput(want string) {
	ss.t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(ss.out.String(), want) {
		select {
		case err := <-ss.done:
			ss.t.Fatalf("%s's session ended (%v) before showing %q; it showed %q", ss.name, err, want, ss.out.String())
		case <-deadline:
			ss.t.Fatalf("%s did not see %q; it saw %q", ss.name, want, ss.out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func mustParse(t testing.TB, raw string) *neturl.URL {
	t.Helper()
	u, err := neturl.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestServerRefusesClientsWithoutTheAPIServersCertificate(t *testing.T) {
	s := startServer(t, time.Second)
	url := "https://" + s.addr + "/logs/team-a/demo/" + runningUID
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.pki.caPEM)

	get := func(certs ...keyPairPEM) (*http.Response, error) {
		cfg := &tls.Config{RootCAs: roots}
		for _, c := range certs {
			kp, err := tls.X509KeyPair(c.cert, c.key)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = append(cfg.Certificates, kp)
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
		return client.Get(url)
	}

	if resp, err := get(); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate got %s, want the TLS handshake refused", resp.Status)
	}
	if resp, err := get(s.pki.foreignCA); err == nil {
		resp.Body.Close()
		t.Errorf("a certificate from another CA got %s, want the TLS handshake refused", resp.Status)
	}
	resp, err := get(s.pki.stranger)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `mallory`) {
		t.Errorf("a certificate from the CA with CN mallory got %s %s, want 403 naming the CN", resp.Status, body)
	}
	resp, err = get(s.pki.client)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized {
		t.Errorf("the vessel-apiserver's certificate got %s", resp.Status)
	}

	// And through a client-go executor, as the apiserver's proxy would.
	ss := s.attach(t, "mallory", s.addr, s.pki.stranger, "", false)
	select {
	case err := <-ss.done:
		var upgrade *httpstream.UpgradeFailureError
		var status *apierrors.StatusError
		if !errors.As(err, &upgrade) || !errors.As(upgrade.Cause, &status) || status.Status().Code != http.StatusForbidden {
			t.Errorf("mallory's console ended with %v, want a 403 StatusError", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mallory's console was not refused")
	}
}

func TestServerConsoleOverWebSocketAndSPDY(t *testing.T) {
	s := startServer(t, time.Second)
	for _, spdy := range []bool{false, true} {
		name := map[bool]string{false: "websocket", true: "spdy"}[spdy]
		t.Run(name, func(t *testing.T) {
			ss := s.attach(t, name, s.addr, s.pki.client, "", spdy)
			ss.typeIn("echo ping " + name)
			ss.waitOutput("pong")
			ss.cancel()
			select {
			case <-ss.done:
			case <-time.After(10 * time.Second):
				t.Fatal("the executor did not return after its context ended")
			}
		})
	}
}

func TestServerTwoViewersSeeTheSameOutput(t *testing.T) {
	s := startServer(t, time.Second)
	first := s.attach(t, "first", s.addr, s.pki.client, "", false)
	first.typeIn("hello ")
	first.waitOutput("hello ")
	second := s.attach(t, "second", s.addr, s.pki.client, "?tailBytes=6", false)
	second.waitOutput("hello ") // replayed
	watcher := s.attach(t, "watcher", s.addr, s.pki.client, "?readOnly=true", true)
	s.waitSessions(t, 3)
	if got := s.server.Sessions(); got != 3 {
		t.Errorf("Server.Sessions() = %d, want 3 (the agent's console sessions metric)", got)
	}

	first.typeIn("ping from first")
	for _, ss := range []*session{first, second, watcher} {
		ss.waitOutput("ping from first")
		ss.waitOutput("pong")
	}
	s.guest.say("VESSEL broadcast\r\n")
	for _, ss := range []*session{first, second, watcher} {
		ss.waitOutput("VESSEL broadcast")
	}
	// The second viewer does not hold the input, and is told so.
	second.typeIn("x")
	second.waitOutput("another session holds the console input")
	if strings.Contains(first.out.String(), "another session holds") {
		t.Errorf("the first viewer got the second's notice")
	}
	// force takes it over without kicking the first.
	forcer := s.attach(t, "forcer", s.addr, s.pki.client, "?force=true", false)
	s.waitSessions(t, 4)
	first.waitOutput("another session took over the console input")
	forcer.typeIn("ping from forcer")
	first.waitOutput("ping from forcer")
}

func TestServerRefusesWhatItCannotServe(t *testing.T) {
	s := startServer(t, time.Second)
	tests := []struct {
		path string
		code int
		want string
	}{
		{"/console/team-a/crashed/" + stoppedUID, http.StatusConflict, "VM team-a/crashed is not running on this host"},
		{"/console/team-b/demo/" + runningUID, http.StatusNotFound, "belongs to team-a/demo"},
		{"/console/team-a/gone/8b1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f", http.StatusNotFound, "has no domain on this host"},
		{"/console/team-a/demo/not-a-uid", http.StatusBadRequest, "not a VM UID"},
		{"/console/team-a/demo/" + runningUID + "?tailBytes=-1", http.StatusBadRequest, "tailBytes"},
		{"/logs/team-a/crashed/" + stoppedUID, http.StatusOK, "Kernel panic"},
		{"/logs/team-a/crashed/" + stoppedUID + "?tailBytes=13", http.StatusOK, "not syncing\n"},
		{"/logs/team-b/crashed/" + stoppedUID, http.StatusNotFound, "has no domain"},
	}
	client := s.httpClient(t)
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := client.Get("https://" + s.addr + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code || !strings.Contains(string(body), tt.want) {
				t.Errorf("GET %s = %d %s, want %d containing %q", tt.path, resp.StatusCode, body, tt.code, tt.want)
			}
		})
	}
}

func TestServerLogsFollowTheRingOnceAConsoleIsOpen(t *testing.T) {
	s := startServer(t, time.Second)
	ss := s.attach(t, "viewer", s.addr, s.pki.client, "", false)
	s.waitSessions(t, 1)
	s.guest.say("VESSEL-GUEST READY live\r\n")
	ss.waitOutput("live")
	resp, err := s.httpClient(t).Get("https://" + s.addr + "/logs/team-a/demo/" + runningUID + "?tailBytes=100")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "VESSEL-GUEST READY live") {
		t.Errorf("logs = %q, want the ring's recent output", body)
	}
}

func (s *testServer) httpClient(t *testing.T) *http.Client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.pki.caPEM)
	kp, err := tls.X509KeyPair(s.pki.client.cert, s.pki.client.key)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{kp}}}}
}

// idleProxy forwards TCP connections and cuts any that carry no byte in
// either direction for idle, as load balancers and NAT gateways do.
type idleProxy struct {
	ln      net.Listener
	backend string
	idle    time.Duration
	cuts    chan struct{}
}

func startIdleProxy(t *testing.T, backend string, idle time.Duration) *idleProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &idleProxy{ln: ln, backend: backend, idle: idle, cuts: make(chan struct{}, 16)}
	t.Cleanup(func() { ln.Close() })
	go p.serve()
	return p
}

func (p *idleProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *idleProxy) forward(client net.Conn) {
	defer client.Close()
	backend, err := net.Dial("tcp", p.backend)
	if err != nil {
		return
	}
	defer backend.Close()
	var mu sync.Mutex
	last := time.Now()
	touch := func() { mu.Lock(); last = time.Now(); mu.Unlock() }
	copyTouch := func(dst, src net.Conn, done chan<- struct{}) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				touch()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	done := make(chan struct{}, 2)
	go copyTouch(backend, client, done)
	go copyTouch(client, backend, done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			mu.Lock()
			quiet := time.Since(last)
			mu.Unlock()
			if quiet > p.idle {
				p.cuts <- struct{}{}
				return
			}
		}
	}
}

func TestServerPingsKeepAnIdleSessionThroughAnIdleTimeoutProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("idles for several seconds")
	}
	const proxyIdle = 3 * time.Second
	const quiet = 7 * time.Second // longer than the proxy's idle timeout and client-go's 5 s pings

	t.Run("pings every second keep it open", func(t *testing.T) {
		s := startServer(t, time.Second)
		proxy := startIdleProxy(t, s.addr, proxyIdle)
		ss := s.attach(t, "idler", proxy.ln.Addr().String(), s.pki.client, "", false)
		ss.typeIn("ping before")
		ss.waitOutput("pong")
		time.Sleep(quiet)
		ss.typeIn("ping after")
		ss.waitOutput("ping after")
		select {
		case <-proxy.cuts:
			t.Error("the proxy cut the session although the server pinged")
		default:
		}
	})

	// The control: without the server's pings the proxy cuts the session.
	t.Run("without server pings the proxy cuts it", func(t *testing.T) {
		s := startServer(t, time.Hour)
		proxy := startIdleProxy(t, s.addr, proxyIdle)
		ss := s.attach(t, "idler", proxy.ln.Addr().String(), s.pki.client, "", false)
		ss.typeIn("ping before")
		ss.waitOutput("pong")
		select {
		case <-proxy.cuts:
		case <-time.After(quiet):
			t.Fatal("the proxy did not cut an idle session; the test proves nothing")
		}
		select {
		case err := <-ss.done:
			t.Logf("the cut session ended with: %v", err)
		case <-time.After(10 * time.Second):
			t.Error("the executor did not notice the cut")
		}
	})
}

func TestServerSessionEndsWhenTheClientClosesStdin(t *testing.T) {
	s := startServer(t, time.Second)
	for _, spdy := range []bool{false, true} {
		ss := s.attach(t, "closer", s.addr, s.pki.client, "", spdy)
		ss.typeIn("ping")
		ss.waitOutput("pong")
		ss.stdin.Close()
		select {
		case err := <-ss.done:
			if err != nil {
				t.Errorf("spdy=%v: the executor returned %v after stdin ended, want nil", spdy, err)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("spdy=%v: the executor did not return after stdin ended", spdy)
		}
	}
}

// floodGuest writes size bytes of output each time it is sent a byte.
type floodGuest struct{ size int }

func (g floodGuest) Open(_ context.Context, _ string, in io.Reader, out io.Writer) (<-chan error, error) {
	done := make(chan error, 1)
	go func() {
		chunk := []byte(strings.Repeat("0123456789abcdef", 2048)) // 32 KiB
		buf := make([]byte, 1)
		for {
			if _, err := in.Read(buf); err != nil {
				done <- nil
				return
			}
			for sent := 0; sent < g.size; sent += len(chunk) {
				_, _ = out.Write(chunk[:min(len(chunk), g.size-sent)])
			}
		}
	}()
	return done, nil
}

// countingWriter signals when it has seen want bytes.
type countingWriter struct {
	mu   sync.Mutex
	n    int
	want int
	full chan struct{}
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += len(p)
	if c.n >= c.want && c.full != nil {
		close(c.full)
		c.full = nil
	}
	return len(p), nil
}

// BenchmarkStreamServerThroughput is the agent side's own capacity: output
// as fast as a backend produces it, through the hub, the mTLS server and
// client-go's executor, in bursts of 1 MiB (a session more than 4 MiB
// behind is dropped). A TCG guest's serial port is far slower.
func BenchmarkStreamServerThroughput(b *testing.B) {
	const size = 1 << 20
	for _, spdy := range []bool{false, true} {
		b.Run(map[bool]string{false: "websocket", true: "spdy"}[spdy], func(b *testing.B) {
			pki := newTestPKI(b)
			srv, err := NewServer(Config{
				Backend:  floodGuest{size: size},
				Domains:  fakeDomains{runningUID: {UUID: runningUID, State: hypervisor.StateRunning, Owner: hypervisor.Owner{Namespace: "team-a", Name: "demo"}}},
				StateDir: b.TempDir(),
			})
			if err != nil {
				b.Fatal(err)
			}
			tlsConfig, err := TLSConfig(pki.serverCert, pki.serverKey, filepath.Join(pki.dir, "ca.crt"))
			if err != nil {
				b.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { _ = srv.Serve(ctx, ln, tlsConfig) }()
			ts := &testServer{pki: pki, addr: ln.Addr().String()}
			cfg := ts.config(ts.addr, pki.client)
			url := "https://" + ts.addr + "/console/team-a/demo/" + runningUID
			var exec remotecommand.Executor
			if spdy {
				exec, err = remotecommand.NewSPDYExecutor(cfg, http.MethodPost, mustParse(b, url))
			} else {
				exec, err = remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, url)
			}
			if err != nil {
				b.Fatal(err)
			}
			r, w := io.Pipe()
			out := &countingWriter{}
			done := make(chan error, 1)
			sctx, scancel := context.WithCancel(ctx)
			go func() {
				done <- exec.StreamWithContext(sctx, remotecommand.StreamOptions{Stdin: r, Stdout: out, Tty: true})
			}()
			b.SetBytes(size)
			b.ResetTimer()
			for range b.N {
				full := make(chan struct{})
				out.mu.Lock()
				out.want, out.full = out.n+size, full
				out.mu.Unlock()
				if _, err := w.Write([]byte{'g'}); err != nil {
					b.Fatal(err)
				}
				select {
				case <-full:
				case err := <-done:
					b.Fatalf("stream ended: %v", err)
				}
			}
			b.StopTimer()
			scancel()
			w.Close()
			<-done
		})
	}
}

// A VM's console takes only so many sessions; one more is refused with a
// 429 that says why, through a client-go executor as the apiserver's proxy
// would see it, and a place frees up when a session leaves.
func TestServerBoundsTheSessionsOfAVM(t *testing.T) {
	s := startServerWith(t, time.Second, func(c *Config) { c.MaxSessions = 2 })
	first := s.attach(t, "first", s.addr, s.pki.client, "", false)
	s.attach(t, "second", s.addr, s.pki.client, "?readOnly=true", true)
	s.waitSessions(t, 2)
	for _, spdy := range []bool{false, true} {
		extra := s.attach(t, "third", s.addr, s.pki.client, "", spdy)
		want := "console of VM team-a/demo: the VM already has 2 console sessions, the most its agent allows"
		select {
		case err := <-extra.done:
			// The WebSocket executor returns the API status; the SPDY one
			// only its message.
			var upgrade *httpstream.UpgradeFailureError
			var status *apierrors.StatusError
			switch {
			case spdy:
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("a third SPDY session ended with %v, want a refusal saying %q", err, want)
				}
			case !errors.As(err, &upgrade) || !errors.As(upgrade.Cause, &status) ||
				status.Status().Code != http.StatusTooManyRequests || status.Status().Reason != metav1.StatusReasonTooManyRequests ||
				!strings.Contains(status.Status().Message, want):
				t.Errorf("a third session ended with %v, want a 429 saying %q", err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("a third session (spdy %v) was not refused", spdy)
		}
	}
	s.waitSessions(t, 2)
	first.cancel()
	s.waitSessions(t, 1)
	again := s.attach(t, "again", s.addr, s.pki.client, "", false)
	again.typeIn("ping again")
	again.waitOutput("pong")
}

// A session the apiserver made read-only (its user may only get the
// console) passes no input to the guest, and tells its user why.
func TestServerReadOnlySessionSaysWhy(t *testing.T) {
	s := startServer(t, time.Second)
	writer := s.attach(t, "writer", s.addr, s.pki.client, "", false)
	reason := "you may get but not create virtualmachines/console"
	viewer := s.attach(t, "viewer", s.addr, s.pki.client, "?readOnlyReason="+neturl.QueryEscape(reason), false)
	s.waitSessions(t, 2)
	viewer.typeIn("ping from the viewer")
	viewer.waitOutput("[vessel: this session is read-only (" + reason + "): input is ignored]")
	// The writer still holds the input, and the guest never got the
	// viewer's keys.
	writer.typeIn("ping from the writer")
	viewer.waitOutput("ping from the writer")
	for _, ss := range []*session{writer, viewer} {
		if strings.Contains(ss.out.String(), "ping from the viewer") {
			t.Errorf("%s saw the read-only viewer's input echoed by the guest: %q", ss.name, ss.out.String())
		}
	}
}
