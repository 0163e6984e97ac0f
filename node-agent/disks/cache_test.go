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

package disks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loopbackEgress lets a test's cache reach httptest servers.
var loopbackEgress = Egress{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

func newTestCache(t *testing.T, cfg CacheConfig) *Cache {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "images")
	}
	if cfg.Egress.AllowedCIDRs == nil {
		cfg.Egress = loopbackEgress
	}
	return NewCache(context.Background(), cfg)
}

func TestCacheFetch(t *testing.T) {
	content := []byte(strings.Repeat("vessel image ", 100000))
	var hits atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-release // hold the download so concurrent fetches overlap
		w.Header().Set("Content-Length", "1300000")
		_, _ = w.Write(content)
	}))
	defer srv.Close()
	ctx := context.Background()
	c := newTestCache(t, CacheConfig{})

	var wg sync.WaitGroup
	paths := make([]string, 5)
	errs := make([]error, 5)
	var progressCalls atomic.Int32
	var lastDone atomic.Int64
	for i := range paths {
		wg.Go(func() {
			paths[i], errs[i] = c.Fetch(ctx, srv.URL+"/img", sum(content), func(done, total int64) {
				progressCalls.Add(1)
				lastDone.Store(done)
			})
		})
	}
	for hits.Load() == 0 { // wait until the download started, then let it finish
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for i := range paths {
		if errs[i] != nil || paths[i] != c.Path(sum(content)) {
			t.Fatalf("fetch %d = %q, %v", i, paths[i], errs[i])
		}
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("%d downloads for concurrent fetches of one image, want 1", n)
	}
	if progressCalls.Load() == 0 || lastDone.Load() != int64(len(content)) {
		t.Errorf("progress: %d calls, last %d bytes", progressCalls.Load(), lastDone.Load())
	}
	got, err := os.ReadFile(c.Path(sum(content)))
	if err != nil || string(got) != string(content) {
		t.Fatalf("cached file differs: %v", err)
	}
	// Readable by root only: the cache dir and the image.
	if m := mode(t, c.cfg.Dir); m != 0o700 {
		t.Errorf("cache directory mode %v, want 0700", m)
	}
	if m := mode(t, c.Path(sum(content))); m != 0o400 {
		t.Errorf("cached image mode %v, want 0400", m)
	}
	// Cached: no new download.
	if _, err := c.Fetch(ctx, srv.URL+"/img", strings.ToUpper(sum(content)), nil); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 1 {
		t.Errorf("cached image downloaded again")
	}
}

// TestCacheErrorsTellNothingFetched: a tenant whose URL reached something
// learns neither its hash nor its content from the VM's status.
func TestCacheErrorsTellNothingFetched(t *testing.T) {
	const secret = "internal-service-answer-d4f00d"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(secret))
	}))
	defer srv.Close()
	c := newTestCache(t, CacheConfig{})
	want := sum([]byte("the real image"))
	_, err := c.Fetch(context.Background(), srv.URL+"/img", want, nil)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want a checksum mismatch naming the expected sum", err)
	}
	if strings.Contains(err.Error(), sum([]byte(secret))) || strings.Contains(err.Error(), secret) {
		t.Errorf("checksum error tells what was fetched: %v", err)
	}
	if reason, permanent := Reason(err); reason != "ImageChecksumMismatch" || !permanent {
		t.Errorf("reason %q, %v", reason, permanent)
	}
	if entries, _ := os.ReadDir(c.cfg.Dir); len(entries) != 0 {
		t.Errorf("cache keeps %d files after a bad download", len(entries))
	}

	// A status line's reason phrase is the server's text, too.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = bufio.NewReader(conn).ReadString('\n')
			_, _ = fmt.Fprintf(conn, "HTTP/1.1 403 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", secret)
			conn.Close()
		}
	}()
	_, err = c.Fetch(context.Background(), "http://"+ln.Addr().String()+"/img", want, nil)
	if err == nil || !strings.Contains(err.Error(), "HTTP 403 Forbidden") || strings.Contains(err.Error(), secret) {
		t.Errorf("HTTP error: %v; want the code without the server's text", err)
	}
	if reason, permanent := Reason(err); reason != "ImageDownloadFailed" || permanent {
		t.Errorf("reason %q, %v", reason, permanent)
	}

	for name, url := range map[string]string{"404": srv.URL + "/missing", "unreachable": "http://127.0.0.1:1/x"} {
		if name == "404" {
			srv404 := httptest.NewServer(http.NotFoundHandler())
			defer srv404.Close()
			url = srv404.URL + "/missing"
		}
		if _, err := c.Fetch(context.Background(), url, want, nil); !errors.Is(err, ErrDownload) {
			t.Errorf("%s: err = %v, want ErrDownload", name, err)
		}
	}
	if _, err := c.Fetch(context.Background(), srv.URL, "abc", nil); err == nil {
		t.Errorf("short checksum accepted")
	}
}

func TestCacheRefusesInternalURLs(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	c := NewCache(context.Background(), CacheConfig{Dir: t.TempDir()})
	_, err := c.Fetch(context.Background(), srv.URL+"/x", sum([]byte("x")), nil)
	if !errors.Is(err, ErrURLNotAllowed) || hits.Load() != 0 {
		t.Fatalf("loopback URL: %v (%d requests arrived)", err, hits.Load())
	}
	if reason, permanent := Reason(err); reason != "ImageURLNotAllowed" || !permanent {
		t.Errorf("reason %q, %v", reason, permanent)
	}
}

func TestCacheRedactsCredentials(t *testing.T) {
	c := newTestCache(t, CacheConfig{})
	_, err := c.Fetch(context.Background(), "http://user:hunter2@127.0.0.1:1/x?token=s3cr3t", sum([]byte("x")), nil)
	if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error leaks a credential: %v", err)
	}
}

func TestCacheSizeLimit(t *testing.T) {
	big := strings.Repeat("x", 4096)
	declared := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(big)) // Content-Length: 4096
	}))
	defer declared.Close()
	var streamed atomic.Int64
	chunked := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No length, and more than the limit: the download stops after it.
		for range 1 << 14 { // 64 MiB
			if _, err := w.Write([]byte(big)); err != nil {
				return
			}
			streamed.Add(int64(len(big)))
			w.(http.Flusher).Flush()
		}
	}))
	defer chunked.Close()
	c := newTestCache(t, CacheConfig{MaxImageSize: 1000})
	for name, url := range map[string]string{"Content-Length": declared.URL, "streamed": chunked.URL} {
		_, err := c.Fetch(context.Background(), url+"/big", sum([]byte(big)), nil)
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "larger than 1000 bytes") {
			t.Errorf("%s: %v, want ErrTooLarge", name, err)
		}
		if reason, permanent := Reason(err); reason != "ImageTooLarge" || !permanent {
			t.Errorf("%s: reason %q, %v", name, reason, permanent)
		}
	}
	// Socket buffers take a few MiB the client never reads.
	if n := streamed.Load(); n > 24<<20 {
		t.Errorf("the server sent %d bytes before the download stopped", n)
	}
	if entries, _ := os.ReadDir(c.cfg.Dir); len(entries) != 0 {
		t.Errorf("cache keeps %d files after too large downloads", len(entries))
	}
}

// slowServer sends a byte every 50ms until the client goes away, and tells
// when it did.
func slowServer(t *testing.T) (srv *httptest.Server, started, gone chan struct{}) {
	started, gone = make(chan struct{}, 16), make(chan struct{}, 16)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		defer func() { gone <- struct{}{} }()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv, started, gone
}

func waitFor(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not happen within 10s", what)
	}
}

func TestCacheDownloadTimeout(t *testing.T) {
	srv, _, gone := slowServer(t)
	c := newTestCache(t, CacheConfig{DownloadTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := c.Fetch(context.Background(), srv.URL+"/slow", sum([]byte("x")), nil)
	if !errors.Is(err, ErrDownload) || !strings.Contains(err.Error(), "took longer than 300ms") {
		t.Fatalf("slow download: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the timeout took %v", d)
	}
	waitFor(t, gone, "the server seeing the client leave")
}

// TestCacheDownloadStopsWithoutWaiters: a VM deleted while its image
// downloads stops the download, unless another VM waits for the same image.
func TestCacheDownloadStopsWithoutWaiters(t *testing.T) {
	srv, started, gone := slowServer(t)
	c := newTestCache(t, CacheConfig{})
	image := sum([]byte("slow"))

	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { _, err := c.Fetch(ctx1, srv.URL+"/slow", image, nil); errs <- err }()
	waitFor(t, started, "the download")
	go func() { _, err := c.Fetch(ctx2, srv.URL+"/slow", image, nil); errs <- err }()
	time.Sleep(100 * time.Millisecond)

	cancel1()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("first fetch: %v, want context.Canceled", err)
	}
	select {
	case <-gone:
		t.Fatalf("the download stopped while another fetch still waited for it")
	case <-time.After(300 * time.Millisecond):
	}
	cancel2()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("second fetch: %v, want context.Canceled", err)
	}
	waitFor(t, gone, "the download stopping once nobody waited")

	// A new fetch starts a new download rather than joining the stopped one.
	ctx3, cancel3 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel3()
	go func() { _, err := c.Fetch(ctx3, srv.URL+"/slow", image, nil); errs <- err }()
	waitFor(t, started, "a new download")
	if err := <-errs; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("third fetch: %v", err)
	}
}

func TestCacheCollect(t *testing.T) {
	requireTool(t, "qemu-img")
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	vms := filepath.Join(dir, "vms")
	for _, d := range []string{images, filepath.Join(vms, "uid-1")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	put := func(name string, size int, age time.Duration) string {
		p := filepath.Join(images, name)
		writeFile(t, p, make([]byte, size), 0o400)
		when := old.Add(-age)
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s := func(c byte) string { return strings.Repeat(string(c), 64) }
	inUse := put("sha256-"+s('a'), 1000, 5*time.Hour)   // oldest, but a VM's spec uses it
	backing := put("sha256-"+s('b'), 1000, 4*time.Hour) // an overlay is backed by it
	oldest := put("sha256-"+s('c'), 1000, 3*time.Hour)  // unused: goes first
	older := put("sha256-"+s('d'), 1000, 2*time.Hour)   // unused: goes second
	newer := put("sha256-"+s('e'), 1000, time.Hour)     // unused, but the cache fits once the others are gone
	recent := filepath.Join(images, "sha256-"+s('f'))   // fetched a moment ago
	writeFile(t, recent, make([]byte, 1000), 0o400)
	stale := put(".download-123", 1000, 0) // a crash's partial download
	live := filepath.Join(images, ".download-456")
	writeFile(t, live, make([]byte, 10), 0o600)
	qemuImg(t, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", backing, filepath.Join(vms, "uid-1", "disk-root.qcow2"))

	c := newTestCache(t, CacheConfig{
		Dir:          images,
		OverlayDir:   vms,
		MaxCacheSize: 4000,
		InUse:        func() (map[string]bool, error) { return map[string]bool{s('a'): true}, nil },
	})
	if err := c.Collect(); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{inUse: true, backing: true, oldest: false, older: false, newer: true, recent: true, stale: false, live: true} {
		_, err := os.Stat(path)
		if exists := err == nil; exists != want {
			t.Errorf("%s exists: %v, want %v", filepath.Base(path), exists, want)
		}
	}

	// Even far over the bound, images in use stay.
	c.cfg.MaxCacheSize = 1
	if err := c.Collect(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{inUse, backing, recent} {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s in use was collected", filepath.Base(path))
		}
	}
	if _, err := os.Stat(newer); err == nil {
		t.Errorf("an unused image survived a cache over its bound")
	}

	// When the agent cannot say what is in use, nothing goes.
	c.cfg.InUse = func() (map[string]bool, error) { return nil, errors.New("no VM list yet") }
	put("sha256-"+s('9'), 1000, 9*time.Hour)
	if err := c.Collect(); err == nil {
		t.Errorf("collection went ahead without knowing what is in use")
	}
	if _, err := os.Stat(filepath.Join(images, "sha256-"+s('9'))); err != nil {
		t.Errorf("an image was collected without knowing what is in use")
	}
}

// TestCacheCollectsAfterDownload: the cache stays bounded without anyone
// calling Collect, and a fetch marks its image recently used.
func TestCacheCollectsAfterDownload(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(strings.TrimPrefix(r.URL.Path, "/")))
	}))
	defer srv.Close()
	c := newTestCache(t, CacheConfig{MaxCacheSize: 10, InUse: func() (map[string]bool, error) { return nil, nil }})
	ctx := context.Background()
	first, err := c.Fetch(ctx, srv.URL+"/first-image", sum([]byte("first-image")), nil)
	if err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-time.Hour)
	if err := os.Chtimes(first, long, long); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(ctx, srv.URL+"/second-image", sum([]byte("second-image")), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(first); !os.IsNotExist(err) {
		t.Errorf("the least recently used image outlived a download over the bound (%v)", err)
	}
	// A cache hit touches the file.
	second := c.Path(sum([]byte("second-image")))
	if err := os.Chtimes(second, long, long); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(ctx, srv.URL+"/second-image", sum([]byte("second-image")), nil); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(second); err != nil || time.Since(st.ModTime()) > time.Minute {
		t.Errorf("a cache hit did not mark the image used: %v", err)
	}
}
