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
// cache keyed by sha256 (downloads confined to allowed addresses, bounded in
// size and time, garbage-collected), inspection of untrusted images against
// their declared format, per-VM qcow2 overlays and blank disks, host paths
// confined to shared and per-namespace roots, and NoCloud seed ISOs. Every
// file it creates for a VM is readable by root only.
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
	"time"

	"k8s.io/klog/v2"
)

// Defaults of CacheConfig's zero values.
const (
	DefaultMaxImageSize    = 20 << 30
	DefaultMaxVirtualSize  = 256 << 30
	DefaultDownloadTimeout = 30 * time.Minute
	DefaultMaxCacheSize    = 50 << 30
)

// Progress is told how many bytes of an image arrived, and the total when
// the server said (else -1).
type Progress func(done, total int64)

// CacheConfig configures an image cache.
type CacheConfig struct {
	// Dir holds the images, sha256-<sum>, readable by root only.
	Dir string
	// Egress confines where downloads connect.
	Egress Egress
	// MaxImageSize bounds one image, in bytes.
	MaxImageSize int64
	// MaxVirtualSize bounds the disk a qcow2 image makes, in bytes (its
	// virtual size, which may be far more than its file's).
	MaxVirtualSize int64
	// DownloadTimeout bounds one download, from request to verified file.
	DownloadTimeout time.Duration
	// MaxCacheSize is what garbage collection shrinks the cache to, least
	// recently used images first. Images in use are never removed, so the
	// cache may stay larger.
	MaxCacheSize int64
	// InUse returns the sha256 sums of images some VM on the node uses.
	// Without it nothing is ever collected.
	InUse func() (map[string]bool, error)
	// OverlayDir holds the VMs' directories; an image that a qcow2 file
	// in one of them names as its backing file is in use too, whatever
	// the VMs' specs say now.
	OverlayDir string
}

// Cache is a directory of downloaded images named by their sha256, shared by
// every VM on the node. Concurrent fetches of one image share one download,
// which stops when no fetch waits for it any more.
type Cache struct {
	cfg    CacheConfig
	client *http.Client
	// ctx bounds every download (the agent's lifetime).
	ctx context.Context

	mu       sync.Mutex
	inflight map[string]*download
}

// download is one image transfer and the fetches waiting for it.
type download struct {
	cancel    context.CancelFunc
	done      chan struct{}
	err       error
	waiters   int
	nextID    int
	listeners map[int]Progress
}

// NewCache returns a cache. Downloads end at the latest when ctx does.
func NewCache(ctx context.Context, cfg CacheConfig) *Cache {
	if cfg.MaxVirtualSize <= 0 {
		cfg.MaxVirtualSize = DefaultMaxVirtualSize
	}
	if cfg.MaxImageSize <= 0 {
		cfg.MaxImageSize = DefaultMaxImageSize
	}
	if cfg.DownloadTimeout <= 0 {
		cfg.DownloadTimeout = DefaultDownloadTimeout
	}
	if cfg.MaxCacheSize <= 0 {
		cfg.MaxCacheSize = DefaultMaxCacheSize
	}
	return &Cache{cfg: cfg, client: cfg.Egress.NewClient(), ctx: ctx, inflight: map[string]*download{}}
}

// Path is where the image with the sha256 lives once fetched.
func (c *Cache) Path(sum string) string {
	return filepath.Join(c.cfg.Dir, "sha256-"+strings.ToLower(sum))
}

// Fetch returns the cached file of the image with sha256 sum, downloading
// it from url first if needed. A file is only ever visible in the cache
// after its checksum was verified. When ctx ends Fetch returns, and the
// download stops unless another fetch still waits for it.
func (c *Cache) Fetch(ctx context.Context, url, sum string, progress Progress) (string, error) {
	sum = strings.ToLower(sum)
	if len(sum) != 64 {
		return "", fmt.Errorf("image %s: sha256 %q is not 64 hex digits", redact(url), sum)
	}
	if _, err := hex.DecodeString(sum); err != nil {
		return "", fmt.Errorf("image %s: sha256 %q is not hex", redact(url), sum)
	}
	path := c.Path(sum)

	c.mu.Lock()
	// Under the lock, so garbage collection cannot remove the file between
	// this check and the touch that marks it recently used.
	if _, err := os.Stat(path); err == nil {
		now := time.Now()
		_ = os.Chtimes(path, now, now)
		_ = os.Chmod(path, 0o400) // older agents left images world-readable
		c.mu.Unlock()
		return path, nil
	}
	d, ok := c.inflight[sum]
	if !ok {
		dctx, cancel := context.WithTimeout(c.ctx, c.cfg.DownloadTimeout)
		d = &download{cancel: cancel, done: make(chan struct{}), listeners: map[int]Progress{}}
		c.inflight[sum] = d
		go func() {
			err := c.download(dctx, url, sum, path, d)
			cancel()
			if err == nil {
				// Before the fetches return: the cache has grown, and
				// the new image is protected as just used.
				c.collect()
			}
			c.mu.Lock()
			d.err = err
			if c.inflight[sum] == d {
				delete(c.inflight, sum)
			}
			c.mu.Unlock()
			close(d.done)
		}()
	}
	d.waiters++
	id := d.nextID
	d.nextID++
	if progress != nil {
		d.listeners[id] = progress
	}
	c.mu.Unlock()

	select {
	case <-d.done:
		c.leave(sum, d, id)
		if d.err != nil {
			return "", d.err
		}
		return path, nil
	case <-ctx.Done():
		c.leave(sum, d, id)
		return "", ctx.Err()
	}
}

// leave drops a waiter; the last one to leave stops an unfinished download,
// and a later fetch starts a new one.
func (c *Cache) leave(sum string, d *download, id int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d.waiters--
	delete(d.listeners, id)
	if d.waiters > 0 {
		return
	}
	select {
	case <-d.done:
	default:
		d.cancel()
		if c.inflight[sum] == d {
			delete(c.inflight, sum)
		}
	}
}

func (c *Cache) report(d *download, done, total int64) {
	c.mu.Lock()
	ls := make([]Progress, 0, len(d.listeners))
	for _, l := range d.listeners {
		ls = append(ls, l)
	}
	c.mu.Unlock()
	for _, l := range ls {
		l(done, total)
	}
}

func (c *Cache) download(ctx context.Context, rawURL, sum, path string, d *download) error {
	url := redact(rawURL)
	if err := PrivateDir(c.cfg.Dir); err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	fail := func(err error) error {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded) && c.ctx.Err() == nil:
			return fmt.Errorf("download %s: %w: it took longer than %v (--image-download-timeout)", url, ErrDownload, c.cfg.DownloadTimeout)
		case ctx.Err() != nil:
			return fmt.Errorf("download %s: %w", url, ctx.Err())
		case errors.Is(err, ErrURLNotAllowed), errors.Is(err, ErrTooLarge):
			return fmt.Errorf("download %s: %w", url, err)
		}
		return fmt.Errorf("download %s: %w: %w", url, ErrDownload, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fmt.Errorf("image %s: %w: %v", url, ErrURLNotAllowed, err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		var uerr *neturl.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its message repeats the URL, maybe with credentials
		}
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// The status code only: the reason phrase is the server's text.
		return fail(fmt.Errorf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode)))
	}
	total := resp.ContentLength
	if total > c.cfg.MaxImageSize {
		return fail(fmt.Errorf("%w: it is larger than %d bytes (--image-max-size)", ErrTooLarge, c.cfg.MaxImageSize))
	}
	tmp, err := os.CreateTemp(c.cfg.Dir, ".download-*")
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	var done int64
	buf := make([]byte, 256<<10)
	c.report(d, 0, total)
	// One byte over the limit is enough to know it is too large.
	body := io.LimitReader(resp.Body, c.cfg.MaxImageSize+1)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			done += int64(n)
			if done > c.cfg.MaxImageSize {
				tmp.Close()
				return fail(fmt.Errorf("%w: it is larger than %d bytes (--image-max-size)", ErrTooLarge, c.cfg.MaxImageSize))
			}
			if _, err := tmp.Write(buf[:n]); err != nil {
				tmp.Close()
				return fmt.Errorf("download %s: write: %w", url, err)
			}
			h.Write(buf[:n])
			c.report(d, done, total)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			tmp.Close()
			return fail(rerr)
		}
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("download %s: %w", url, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	// Never say what the fetched file's sum is: it would tell a tenant the
	// hash of whatever the URL reached.
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("image %s: %w: the downloaded file does not have the sha256 %s", url, ErrChecksum, sum)
	}
	// Shared read-only by every VM that uses it as a backing file, and
	// readable by root only: another tenant's image is none of a local
	// user's business.
	if err := os.Chmod(tmp.Name(), 0o400); err != nil {
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

// logger is the cache's logger, from the context it was made with.
func (c *Cache) logger() klog.Logger { return klog.FromContext(c.ctx) }
