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

package main

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

var epoch = time.Unix(1_700_000_000, 0).UTC()

// entries reads a written layer back.
func entries(t *testing.T, layer string) []*tar.Header {
	t.Helper()
	f, err := os.Open(layer)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if gz.Name != "" || !gz.ModTime.IsZero() {
		t.Errorf("gzip header carries name %q and time %v", gz.Name, gz.ModTime)
	}
	tr := tar.NewReader(gz)
	var hdrs []*tar.Header
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return hdrs
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, hdr)
	}
}

func names(hdrs []*tar.Header) []string {
	var out []string
	for _, h := range hdrs {
		out = append(out, h.Name)
	}
	return out
}

// rootfsTar writes a tarball as mmdebstrap does: "./" names, user names,
// device nodes, times after the epoch and an SELinux label.
func rootfsTar(t *testing.T, file string, mtime time.Time) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	old := epoch.Add(-24 * time.Hour)
	for _, h := range []*tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime},
		{Name: "./dev/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime},
		{Name: "./dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mtime},
		{Name: "./dev/fd", Typeflag: tar.TypeSymlink, Linkname: "/proc/self/fd", ModTime: mtime},
		{Name: "./usr/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime, Uname: "root", Gname: "root"},
		{Name: "./usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime},
		{Name: "./usr/bin/ping", Typeflag: tar.TypeReg, Mode: 0o4755, Size: 4, ModTime: old, Uname: "root",
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "cap", "SCHILY.xattr.security.selinux": "label"}},
		{Name: "./usr/bin/ping6", Typeflag: tar.TypeLink, Linkname: "./usr/bin/ping", ModTime: mtime},
		{Name: "./var/mail/", Typeflag: tar.TypeDir, Mode: 0o2775, Gid: 8, Gname: "mail", ModTime: mtime},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestLayerFromTarIsNormalizedAndReproducible(t *testing.T) {
	dir := t.TempDir()
	// Two builds of the same content at different times.
	rootfsTar(t, filepath.Join(dir, "a.tar"), epoch.Add(time.Hour))
	rootfsTar(t, filepath.Join(dir, "b.tar"), epoch.Add(48*time.Hour))
	a, err := writeLayer(filepath.Join(dir, "a.tar.gz"), layerSource{fromTar: filepath.Join(dir, "a.tar"), epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	b, err := writeLayer(filepath.Join(dir, "b.tar.gz"), layerSource{fromTar: filepath.Join(dir, "b.tar"), epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("same content, different layers: %+v, %+v", a, b)
	}

	hdrs := entries(t, filepath.Join(dir, "a.tar.gz"))
	want := []string{"dev/", "usr/", "usr/bin/", "usr/bin/ping", "usr/bin/ping6", "var/mail/"}
	if got := names(hdrs); !slices.Equal(got, want) {
		t.Errorf("entries %v, want %v (root and /dev's contents dropped, ./ stripped)", got, want)
	}
	for _, h := range hdrs {
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s keeps owner names %q:%q", h.Name, h.Uname, h.Gname)
		}
		if h.ModTime.After(epoch) {
			t.Errorf("%s: time %v after the epoch", h.Name, h.ModTime)
		}
		switch h.Name {
		case "usr/bin/ping":
			if h.Mode != 0o4755 || !h.ModTime.Equal(epoch.Add(-24*time.Hour)) {
				t.Errorf("ping: mode %o, time %v: setuid bit and older time must stay", h.Mode, h.ModTime)
			}
			if h.PAXRecords["SCHILY.xattr.security.capability"] != "cap" || h.PAXRecords["SCHILY.xattr.security.selinux"] != "" {
				t.Errorf("ping: xattrs %v, want the capability without the SELinux label", h.PAXRecords)
			}
		case "usr/bin/ping6":
			if h.Typeflag != tar.TypeLink || h.Linkname != "usr/bin/ping" {
				t.Errorf("ping6: hard link to %q", h.Linkname)
			}
		case "var/mail/":
			if h.Gid != 8 || h.Mode != 0o2775 {
				t.Errorf("var/mail: gid %d mode %o", h.Gid, h.Mode)
			}
		}
	}
}

func TestLayerFromDirOwnsByRootUnlessChowned(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"etc", "home/nonroot/.cache", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0::/root:/sbin/nologin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/share/zoneinfo/UTC", filepath.Join(root, "etc", "localtime")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "layer.tar.gz")
	if _, err := writeLayer(out, layerSource{fromDir: root, epoch: epoch, chown: map[string]owner{"home/nonroot": {65532, 65532}}}); err != nil {
		t.Fatal(err)
	}
	for _, h := range entries(t, out) {
		wantUID := 0
		if h.Name == "home/nonroot/" || h.Name == "home/nonroot/.cache/" {
			wantUID = 65532
		}
		if h.Uid != wantUID || h.Gid != wantUID {
			t.Errorf("%s owned by %d:%d, want %d", h.Name, h.Uid, h.Gid, wantUID)
		}
		if !h.ModTime.Equal(epoch) {
			t.Errorf("%s: time %v, want the epoch", h.Name, h.ModTime)
		}
		if h.Name == "tmp/" && h.Mode != 0o1777 {
			t.Errorf("tmp: mode %o, want 1777", h.Mode)
		}
		if h.Name == "etc/localtime" && (h.Typeflag != tar.TypeSymlink || h.Linkname != "/usr/share/zoneinfo/UTC") {
			t.Errorf("etc/localtime: %c -> %s", h.Typeflag, h.Linkname)
		}
	}
}

func TestLayerOfFilesAddsParentDirectories(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "vessel-apiserver")
	if err := os.WriteFile(bin, []byte("\x7fELF"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "layer.tar.gz")
	e, err := parseFileEntry("/usr/local/bin/vessel-apiserver=" + bin + ":0755")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writeLayer(out, layerSource{files: []fileEntry{e}, epoch: epoch}); err != nil {
		t.Fatal(err)
	}
	hdrs := entries(t, out)
	if got, want := names(hdrs), []string{"usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/vessel-apiserver"}; !slices.Equal(got, want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	if h := hdrs[3]; h.Mode != 0o755 || h.Size != 4 {
		t.Errorf("binary: mode %o size %d, want 755 and 4", h.Mode, h.Size)
	}
	if hdrs[0].Mode != 0o755 {
		t.Errorf("usr/: mode %o", hdrs[0].Mode)
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"./": "", ".": "", "/": "", "./usr/bin/": "usr/bin", "/etc/passwd": "etc/passwd", "usr//lib/./x": "usr/lib/x",
	} {
		if got := cleanName(in); got != want {
			t.Errorf("cleanName(%q) = %q, want %q", in, got, want)
		}
	}
}
