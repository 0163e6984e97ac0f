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
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A layer is a gzip-compressed tar stream whose bytes depend only on its
// content and the epoch: entries in a fixed order, numeric owners only (no
// user or group names, which differ between build hosts), modification
// times clamped to the epoch, no access or change times, and only the
// extended attributes a runtime needs (file capabilities). gzip headers
// carry no name and no time.

// owner is a numeric user and group.
type owner struct{ uid, gid int }

// layerSource says what a layer holds: exactly one of fromTar, fromDir or
// files.
type layerSource struct {
	// fromTar is a root filesystem tarball (mmdebstrap's output): its
	// entries are kept in their order with their owners and modes. Device
	// nodes and whatever lies under /dev are dropped: container runtimes
	// mount /dev themselves, and a layer with device nodes cannot be
	// unpacked without privileges.
	fromTar string
	// fromDir is a directory packed in lexical walk order; everything is
	// owned by root unless chown says otherwise.
	fromDir string
	// files are single files (with their parent directories, 0755 and
	// owned by root).
	files []fileEntry
	// chown gives a path and everything under it another owner (fromDir
	// and files only).
	chown map[string]owner
	epoch time.Time
}

type fileEntry struct {
	dest string // path in the image, relative to /
	src  string
	mode int64 // -1: the source file's permission bits
}

// layerResult names the written layer by its digests.
type layerResult struct {
	Digest string // of the compressed blob
	DiffID string // of the uncompressed tar
	Size   int64
}

func runLayer(args []string) error {
	fs := flag.NewFlagSet("layer", flag.ExitOnError)
	out := fs.String("out", "", "compressed layer to write (.tar.gz)")
	fromTar := fs.String("from-tar", "", "root filesystem tarball to take as the layer")
	fromDir := fs.String("from-dir", "", "directory to take as the layer")
	var files, chowns stringList
	fs.Var(&files, "file", "DEST=SRC[:MODE]: a file at DEST (repeatable)")
	fs.Var(&chowns, "chown", "PATH=UID:GID: owner of PATH and what is under it (repeatable)")
	epoch := epochFlag(fs)
	_ = fs.Parse(args)
	if *out == "" || fs.NArg() > 0 {
		return errors.New("--out is required and no arguments are taken")
	}
	src := layerSource{fromTar: *fromTar, fromDir: *fromDir, chown: map[string]owner{}, epoch: epochTime(*epoch)}
	for _, f := range files {
		e, err := parseFileEntry(f)
		if err != nil {
			return err
		}
		src.files = append(src.files, e)
	}
	for _, c := range chowns {
		p, o, err := parseChown(c)
		if err != nil {
			return err
		}
		src.chown[p] = o
	}
	res, err := writeLayer(*out, src)
	if err != nil {
		return err
	}
	fmt.Printf("%s digest=%s diffID=%s size=%d\n", *out, res.Digest, res.DiffID, res.Size)
	return nil
}

func parseFileEntry(s string) (fileEntry, error) {
	dest, src, ok := strings.Cut(s, "=")
	if !ok || dest == "" || src == "" {
		return fileEntry{}, fmt.Errorf("--file %q: want DEST=SRC[:MODE]", s)
	}
	e := fileEntry{dest: cleanName(dest), src: src, mode: -1}
	if i := strings.LastIndexByte(src, ':'); i >= 0 {
		if m, err := strconv.ParseInt(src[i+1:], 8, 64); err == nil {
			e.src, e.mode = src[:i], m
		}
	}
	return e, nil
}

func parseChown(s string) (string, owner, error) {
	p, ids, ok := strings.Cut(s, "=")
	u, g, ok2 := strings.Cut(ids, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if !ok || !ok2 || err1 != nil || err2 != nil {
		return "", owner{}, fmt.Errorf("--chown %q: want PATH=UID:GID (numeric)", s)
	}
	return strings.TrimSuffix(cleanName(p), "/"), owner{uid, gid}, nil
}

// writeLayer writes the layer to out (through a temporary file, so that an
// interrupted build never leaves a truncated layer that looks complete).
func writeLayer(out string, src layerSource) (layerResult, error) {
	sources := 0
	for _, set := range []bool{src.fromTar != "", src.fromDir != "", len(src.files) > 0} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return layerResult{}, errors.New("give exactly one of --from-tar, --from-dir or --file")
	}
	if src.fromTar != "" && len(src.chown) > 0 {
		return layerResult{}, errors.New("--chown applies to --from-dir and --file only: a tarball keeps its owners")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return layerResult{}, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".layer-*")
	if err != nil {
		return layerResult{}, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	compressed := sha256.New()
	counter := &countingWriter{}
	gz, err := gzip.NewWriterLevel(io.MultiWriter(tmp, compressed, counter), gzip.DefaultCompression)
	if err != nil {
		return layerResult{}, err
	}
	uncompressed := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(gz, uncompressed))
	w := &entryWriter{tw: tw, epoch: src.epoch, chown: src.chown}
	switch {
	case src.fromTar != "":
		err = w.copyTar(src.fromTar)
	case src.fromDir != "":
		err = w.addDir(src.fromDir)
	default:
		err = w.addFiles(src.files)
	}
	if err != nil {
		return layerResult{}, err
	}
	if err := tw.Close(); err != nil {
		return layerResult{}, err
	}
	if err := gz.Close(); err != nil {
		return layerResult{}, err
	}
	if err := tmp.Close(); err != nil {
		return layerResult{}, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return layerResult{}, err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return layerResult{}, err
	}
	return layerResult{
		Digest: "sha256:" + hex.EncodeToString(compressed.Sum(nil)),
		DiffID: "sha256:" + hex.EncodeToString(uncompressed.Sum(nil)),
		Size:   counter.n,
	}, nil
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

type entryWriter struct {
	tw    *tar.Writer
	epoch time.Time
	chown map[string]owner
}

// cleanName turns "./usr/bin/", "/usr/bin" and "usr/bin" into "usr/bin"
// (the trailing slash of directories is added back when writing).
func cleanName(name string) string {
	name = strings.TrimLeft(name, "/")
	for strings.HasPrefix(name, "./") {
		name = strings.TrimLeft(name[2:], "/")
	}
	if name == "." {
		return ""
	}
	return strings.TrimSuffix(path.Clean("/" + name)[1:], "/")
}

// ownerOf returns the owner of the longest --chown path that is p or
// contains it; root otherwise.
func (w *entryWriter) ownerOf(p string) owner {
	best, o := -1, owner{}
	for k, v := range w.chown {
		if (p == k || strings.HasPrefix(p, k+"/")) && len(k) > best {
			best, o = len(k), v
		}
	}
	return o
}

// clamp is the reproducible-builds rule for modification times: nothing
// newer than the epoch, whole seconds.
func (w *entryWriter) clamp(t time.Time) time.Time {
	if t.IsZero() || t.After(w.epoch) {
		return w.epoch
	}
	return t.Truncate(time.Second).UTC()
}

// keptPAX keeps file capabilities and other xattrs a program may rely on,
// and drops what only describes the build host (SELinux labels) or time.
func keptPAX(records map[string]string) map[string]string {
	var kept map[string]string
	for k, v := range records {
		if strings.HasPrefix(k, "SCHILY.xattr.") && k != "SCHILY.xattr.security.selinux" {
			if kept == nil {
				kept = map[string]string{}
			}
			kept[k] = v
		}
	}
	return kept
}

func (w *entryWriter) copyTar(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", file, err)
		}
		name := cleanName(hdr.Name)
		if name == "" || strings.HasPrefix(name, "dev/") {
			continue
		}
		typ := hdr.Typeflag
		switch typ {
		case tar.TypeChar, tar.TypeBlock:
			continue
		case tar.TypeRegA:
			typ = tar.TypeReg
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
		default:
			return fmt.Errorf("%s: %s has unsupported type %q", file, hdr.Name, hdr.Typeflag)
		}
		out := &tar.Header{
			Typeflag:   typ,
			Name:       name,
			Linkname:   hdr.Linkname,
			Size:       hdr.Size,
			Mode:       hdr.Mode & 0o7777,
			Uid:        hdr.Uid,
			Gid:        hdr.Gid,
			ModTime:    w.clamp(hdr.ModTime),
			PAXRecords: keptPAX(hdr.PAXRecords),
		}
		switch typ {
		case tar.TypeDir:
			out.Name += "/"
		case tar.TypeLink:
			out.Linkname = cleanName(hdr.Linkname)
		}
		if typ != tar.TypeReg {
			out.Size = 0
		}
		if err := w.tw.WriteHeader(out); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		if typ == tar.TypeReg {
			if _, err := io.Copy(w.tw, tr); err != nil {
				return fmt.Errorf("copy %s: %w", name, err)
			}
		}
	}
}

// mode converts permission and special bits to tar's encoding.
func mode(fm fs.FileMode) int64 {
	m := int64(fm.Perm())
	if fm&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if fm&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if fm&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return m
}

func (w *entryWriter) addDir(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		o := w.ownerOf(name)
		hdr := &tar.Header{Name: name, Mode: mode(info.Mode()), Uid: o.uid, Gid: o.gid, ModTime: w.epoch}
		switch {
		case info.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
			return w.tw.WriteHeader(hdr)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
			return w.tw.WriteHeader(hdr)
		case info.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
			return w.copyFile(hdr, p)
		default:
			return fmt.Errorf("%s: only directories, regular files and symlinks can be packed", p)
		}
	})
}

func (w *entryWriter) addFiles(files []fileEntry) error {
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.dest); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	type entry struct {
		name string
		file *fileEntry
	}
	var entries []entry
	for d := range dirs {
		entries = append(entries, entry{name: d})
	}
	for i := range files {
		entries = append(entries, entry{name: files[i].dest, file: &files[i]})
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	for _, e := range entries {
		o := w.ownerOf(e.name)
		hdr := &tar.Header{Name: e.name, Uid: o.uid, Gid: o.gid, ModTime: w.epoch}
		if e.file == nil {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, e.name+"/", 0o755
			if err := w.tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		}
		info, err := os.Stat(e.file.src)
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("--file %s: %s is not a regular file", e.name, e.file.src)
		}
		hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, info.Size(), e.file.mode
		if hdr.Mode < 0 {
			hdr.Mode = mode(info.Mode())
		}
		if err := w.copyFile(hdr, e.file.src); err != nil {
			return err
		}
	}
	return nil
}

func (w *entryWriter) copyFile(hdr *tar.Header, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := w.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s: %w", hdr.Name, err)
	}
	n, err := io.Copy(w.tw, f)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("%s changed size while it was packed", src)
	}
	return nil
}
