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
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vessel-vm/vessel/node-agent/internal/needs"
)

func TestConfineHostPath(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "images")
	outside := filepath.Join(base, "secret")
	for _, d := range []string{root, filepath.Join(root, "sub"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string) {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "disk.img"))
	write(filepath.Join(root, "sub", "disk.qcow2"))
	write(filepath.Join(outside, "shadow"))
	link := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	link(filepath.Join(outside, "shadow"), "escape")          // file symlink out
	link(outside, "escape-dir")                               // directory symlink out
	link("sub/disk.qcow2", "inside")                          // relative symlink that stays in
	link(filepath.Join(root, "sub"), "subdir")                // directory symlink that stays in
	link(filepath.Join(base, "images-evil", "x"), "dangling") // target missing
	// A sibling whose name starts like the root is not under it.
	if err := os.MkdirAll(filepath.Join(base, "images-evil"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(base, "images-evil", "disk.img"))
	// A root that is itself reached through a symlink.
	rootLink := filepath.Join(base, "images-link")
	if err := os.Symlink(root, rootLink); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		path    string
		roots   []string
		want    string
		wantErr string
	}{
		{"file in root", filepath.Join(root, "disk.img"), []string{root}, filepath.Join(root, "disk.img"), ""},
		{"file in a subdirectory", filepath.Join(root, "sub", "disk.qcow2"), []string{root}, filepath.Join(root, "sub", "disk.qcow2"), ""},
		{"symlink staying inside", filepath.Join(root, "inside"), []string{root}, filepath.Join(root, "sub", "disk.qcow2"), ""},
		{"through a directory symlink staying inside", filepath.Join(root, "subdir", "disk.qcow2"), []string{root}, filepath.Join(root, "sub", "disk.qcow2"), ""},
		{"root given through a symlink", filepath.Join(root, "disk.img"), []string{rootLink}, filepath.Join(root, "disk.img"), ""},
		{"path given through the root's symlink", filepath.Join(rootLink, "disk.img"), []string{root}, filepath.Join(root, "disk.img"), ""},
		{"symlink escaping", filepath.Join(root, "escape"), []string{root}, "", "resolves to"},
		{"directory symlink escaping", filepath.Join(root, "escape-dir", "shadow"), []string{root}, "", "resolves to"},
		{"dot-dot escaping", root + "/../secret/shadow", []string{root}, "", "outside the allowed"},
		{"sibling with a common prefix", filepath.Join(base, "images-evil", "disk.img"), []string{root}, "", "outside the allowed"},
		{"dangling symlink", filepath.Join(root, "dangling"), []string{root}, "", "no such file"},
		{"missing file", filepath.Join(root, "nope"), []string{root}, "", "no such file"},
		{"relative path", "images/disk.img", []string{root}, "", "not absolute"},
		{"no roots", filepath.Join(root, "disk.img"), nil, "", "no roots"},
		{"second root matches", filepath.Join(outside, "shadow"), []string{root, outside}, filepath.Join(outside, "shadow"), ""},
		{"missing root ignored", filepath.Join(root, "disk.img"), []string{"/nonexistent", root}, filepath.Join(root, "disk.img"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ConfineHostPath(tt.path, tt.roots)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ConfineHostPath(%s) = %q, %v; want error containing %q", tt.path, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ConfineHostPath(%s) = %q, %v; want %q", tt.path, got, err, tt.want)
			}
		})
	}
	if _, err := ConfineHostPath(filepath.Join(root, "escape"), []string{root}); !errors.Is(err, ErrOutsideRoots) {
		t.Errorf("escape error is not ErrOutsideRoots: %v", err)
	}
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
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
	c := NewCache(ctx, t.TempDir(), nil)

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
	// Cached: no new download.
	if _, err := c.Fetch(ctx, srv.URL+"/img", strings.ToUpper(sum(content)), nil); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 1 {
		t.Errorf("cached image downloaded again")
	}
}

func TestCacheChecksumMismatch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("not what you expected"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	c := NewCache(context.Background(), dir, nil)
	want := sum([]byte("the real image"))
	_, err := c.Fetch(context.Background(), srv.URL+"/img", want, nil)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), sum([]byte("not what you expected"))) {
		t.Fatalf("err = %v, want a checksum mismatch naming both sums", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("cache keeps %d files after a bad download", len(entries))
	}

	for name, url := range map[string]string{"404": srv.URL + "/missing", "unreachable": "http://127.0.0.1:1/x"} {
		if name == "404" {
			srv404 := httptest.NewServer(http.NotFoundHandler())
			defer srv404.Close()
			url = srv404.URL + "/missing"
		}
		if _, err := c.Fetch(context.Background(), url, want, nil); err == nil || errors.Is(err, ErrChecksum) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := c.Fetch(context.Background(), srv.URL, "abc", nil); err == nil {
		t.Errorf("short checksum accepted")
	}
}

func TestCacheRedactsCredentials(t *testing.T) {
	c := NewCache(context.Background(), t.TempDir(), nil)
	_, err := c.Fetch(context.Background(), "http://user:hunter2@127.0.0.1:1/x", sum([]byte("x")), nil)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestOverlayAndBlank(t *testing.T) {
	needs.Tool(t, "qemu-img")
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(base, make([]byte, 1<<20), 0o444); err != nil {
		t.Fatal(err)
	}
	if f, err := ImageFormat(ctx, base); err != nil || f != "raw" {
		t.Fatalf("format of raw = %q, %v", f, err)
	}
	overlay := filepath.Join(dir, "disk.qcow2")
	if err := Overlay(ctx, base, overlay); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("qemu-img", "info", "--output=json", overlay).Output()
	if err != nil || !strings.Contains(string(out), `"backing-filename": "`+base+`"`) || !strings.Contains(string(out), `"backing-filename-format": "raw"`) {
		t.Fatalf("overlay info: %s %v", out, err)
	}
	// Idempotent: an existing overlay (the guest's data) is kept.
	st1, _ := os.Stat(overlay)
	if err := Overlay(ctx, base, overlay); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(overlay)
	if !os.SameFile(st1, st2) {
		t.Errorf("overlay was recreated")
	}
	blank := filepath.Join(dir, "blank.qcow2")
	if err := Blank(ctx, blank, 64<<20); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command("qemu-img", "info", "--output=json", blank).Output()
	if !strings.Contains(string(out), `"virtual-size": 67108864`) {
		t.Errorf("blank disk info: %s", out)
	}
	if err := Blank(ctx, filepath.Join(dir, "zero.qcow2"), 0); err == nil {
		t.Errorf("zero-size blank disk accepted")
	}
}

func TestSeed(t *testing.T) {
	needs.Tool(t, "genisoimage")
	needs.Tool(t, "isoinfo")
	path := filepath.Join(t.TempDir(), "seed.iso")
	cfg := SeedConfig{InstanceID: "uid-123", LocalHostname: "web", UserData: "#!/bin/sh\necho hi\n", NetworkData: "version: 2\n"}
	if err := Seed(context.Background(), path, cfg); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("isoinfo", "-d", "-i", path).Output()
	if err != nil || !strings.Contains(string(out), "Volume id: cidata") {
		t.Fatalf("volume id: %s %v", out, err)
	}
	for file, want := range map[string]string{"user-data": cfg.UserData, "meta-data": "instance-id: uid-123\nlocal-hostname: web\n", "network-config": cfg.NetworkData} {
		got, err := exec.Command("isoinfo", "-R", "-i", path, "-x", "/"+file).Output()
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", file, got, err, want)
		}
	}
}

func TestMetaDataQuotes(t *testing.T) {
	md := SeedConfig{InstanceID: "i-1", LocalHostname: "a: b"}.MetaData()
	if !strings.Contains(md, `local-hostname: "a: b"`) {
		t.Errorf("meta-data = %q", md)
	}
}
