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

// Package disks prepares the files a VM's domain uses: a node-local image
// cache keyed by sha256, per-VM qcow2 overlays and blank disks, host paths
// confined to allowed roots, and NoCloud seed ISOs.
package disks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ErrChecksum says a downloaded image does not have the sha256 it should.
var ErrChecksum = errors.New("sha256 mismatch")

// Progress is told how many bytes of an image arrived, and the total when
// the server said (else -1).
type Progress func(done, total int64)

// Cache is a directory of downloaded images named by their sha256, shared by
// every VM on the node. Concurrent fetches of one image share one download.
type Cache struct {
	dir    string
	client *http.Client
	// ctx bounds downloads, which outlive the callers that started them
	// (another VM may be waiting on the same image).
	ctx context.Context

	mu       sync.Mutex
	inflight map[string]*download
}

type download struct {
	done      chan struct{}
	err       error
	listeners []Progress
}

// NewCache returns a cache in dir. Downloads run until ctx ends.
func NewCache(ctx context.Context, dir string, client *http.Client) *Cache {
	if client == nil {
		client = http.DefaultClient
	}
	return &Cache{dir: dir, client: client, ctx: ctx, inflight: map[string]*download{}}
}

// Path is where the image with the sha256 lives once fetched.
func (c *Cache) Path(sum string) string {
	return filepath.Join(c.dir, "sha256-"+strings.ToLower(sum))
}

// Fetch returns the cached file of the image with sha256 sum, downloading
// it from url first if needed. A file is only ever visible in the cache
// after its checksum was verified.
func (c *Cache) Fetch(ctx context.Context, url, sum string, progress Progress) (string, error) {
	sum = strings.ToLower(sum)
	if len(sum) != 64 {
		return "", fmt.Errorf("image %s: sha256 %q is not 64 hex digits", redact(url), sum)
	}
	if _, err := hex.DecodeString(sum); err != nil {
		return "", fmt.Errorf("image %s: sha256 %q is not hex", redact(url), sum)
	}
	path := c.Path(sum)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}

	c.mu.Lock()
	d, ok := c.inflight[sum]
	if !ok {
		d = &download{done: make(chan struct{})}
		c.inflight[sum] = d
		go func() {
			err := c.download(url, sum, path, d)
			c.mu.Lock()
			d.err = err
			delete(c.inflight, sum)
			c.mu.Unlock()
			close(d.done)
		}()
	}
	if progress != nil {
		d.listeners = append(d.listeners, progress)
	}
	c.mu.Unlock()

	select {
	case <-d.done:
		if d.err != nil {
			return "", d.err
		}
		return path, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (c *Cache) report(d *download, done, total int64) {
	c.mu.Lock()
	ls := append([]Progress(nil), d.listeners...)
	c.mu.Unlock()
	for _, l := range ls {
		l(done, total)
	}
}

func (c *Cache) download(rawURL, sum, path string, d *download) error {
	url := redact(rawURL)
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return fmt.Errorf("create image cache %s: %w", c.dir, err)
	}
	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fmt.Errorf("image %s: %w", url, err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		var uerr *neturl.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its message repeats the URL
		}
		return fmt.Errorf("download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download %s: HTTP %s", url, resp.Status)
	}
	tmp, err := os.CreateTemp(c.dir, ".download-*")
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	total := resp.ContentLength
	var done int64
	buf := make([]byte, 256<<10)
	c.report(d, 0, total)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := tmp.Write(buf[:n]); err != nil {
				tmp.Close()
				return fmt.Errorf("download %s: write: %w", url, err)
			}
			h.Write(buf[:n])
			done += int64(n)
			c.report(d, done, total)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			tmp.Close()
			return fmt.Errorf("download %s: %w", url, rerr)
		}
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("download %s: %w", url, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("image %s: %w: expected %s, got %s", url, ErrChecksum, sum, got)
	}
	// Shared read-only by every VM that uses it as a backing file.
	if err := os.Chmod(tmp.Name(), 0o444); err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	return nil
}

// redact drops what may be a credential from a URL before it goes into an
// error, a status message or a log: user info and the query string.
func redact(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "redacted"
	}
	u.Fragment = ""
	return u.String()
}
