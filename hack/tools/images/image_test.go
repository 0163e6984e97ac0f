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
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const dpkgStatus = `Package: tzdata
Status: install ok installed
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: all
Version: 2026f-0+deb12u1
Description: time zone and daylight-saving time data
 multi-line description

Package: removed
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u14
`

// testImage writes a base layer with dpkg's database and an os-release,
// and a layer with a Go binary (this test's own executable), and returns
// the spec of an image made of them.
func testImage(t *testing.T, dir string) imageSpec {
	t.Helper()
	base := filepath.Join(dir, "base.tar")
	f, err := os.Create(base)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for name, content := range map[string]string{
		"./etc/os-release":      "ID=debian\nVERSION_ID=\"12\"\n",
		"./var/lib/dpkg/status": dpkgStatus,
	} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content)), ModTime: epoch}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	layers := []string{filepath.Join(dir, "base.tar.gz"), filepath.Join(dir, "bin.tar.gz")}
	if _, err := writeLayer(layers[0], layerSource{fromTar: base, epoch: epoch}); err != nil {
		t.Fatal(err)
	}
	if _, err := writeLayer(layers[1], layerSource{files: []fileEntry{{dest: "usr/local/bin/x", src: self, mode: 0o755}}, epoch: epoch}); err != nil {
		t.Fatal(err)
	}
	p, _ := v1.ParsePlatform("linux/amd64")
	return imageSpec{
		layers: layers, history: []string{"base", "binary"},
		repository: "example.com/vessel/x", tag: "v1.2.3", platform: *p,
		entrypoint: []string{"/usr/local/bin/x"}, user: "65532:65532", workdir: "/",
		env:     []string{"PATH=/usr/local/bin:/usr/bin"},
		labels:  map[string]string{"org.opencontainers.image.version": "v1.2.3", "org.opencontainers.image.licenses": "Apache-2.0"},
		created: epoch,
	}
}

func TestImageIsReproducibleAndReadable(t *testing.T) {
	dir := t.TempDir()
	spec := testImage(t, dir)
	first, err := spec.image()
	if err != nil {
		t.Fatal(err)
	}
	second, err := spec.image()
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := first.Digest()
	d2, _ := second.Digest()
	if d1 != d2 {
		t.Errorf("digests %s and %s from the same inputs", d1, d2)
	}

	out := filepath.Join(dir, "out")
	if err := writeLayout(out, first, spec); err != nil {
		t.Fatal(err)
	}
	// Written again over itself: the layout holds only this image.
	if err := writeLayout(out, first, spec); err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != d1 || im.Manifests[0].Annotations[refNameAnnotation] != "v1.2.3" {
		t.Fatalf("index: %+v", im.Manifests)
	}
	img, err := idx.Image(d1)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" || cfg.Config.Entrypoint[0] != "/usr/local/bin/x" || !cfg.Created.Time.Equal(epoch) ||
		cfg.Architecture != "amd64" || len(cfg.History) != 2 || cfg.History[1].CreatedBy != "binary" {
		t.Errorf("config: %+v", cfg)
	}
	m, _ := img.Manifest()
	if m.Annotations["org.opencontainers.image.version"] != "v1.2.3" {
		t.Errorf("manifest annotations %v", m.Annotations)
	}

	archive := filepath.Join(dir, "x.tar")
	if err := writeDockerArchive(archive, first, spec); err != nil {
		t.Fatal(err)
	}
	loaded, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := first.ConfigName()
	c2, _ := loaded.ConfigName()
	if c1 != c2 {
		t.Errorf("docker-archive config %s, image config %s", c2, c1)
	}
}

func TestSBOMListsInstalledPackagesAndGoModules(t *testing.T) {
	dir := t.TempDir()
	spec := testImage(t, dir)
	img, err := spec.image()
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	file := filepath.Join(dir, "sbom.json")
	if err := writeSBOM(file, img, spec, digest); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc spdxDocument
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	purls := map[string]string{}
	ids := map[string]bool{}
	for _, p := range doc.Packages {
		if ids[p.SPDXID] {
			t.Errorf("SPDXID %s twice", p.SPDXID)
		}
		ids[p.SPDXID] = true
		if len(p.ExternalRefs) == 1 {
			purls[p.Name] = p.ExternalRefs[0].ReferenceLocator
		}
	}
	for name, want := range map[string]string{
		"tzdata": "pkg:deb/debian/tzdata@2026f-0%2Bdeb12u1?arch=all&distro=debian-12",
		"libc6":  "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12&upstream=glibc",
	} {
		if purls[name] != want {
			t.Errorf("%s: purl %q, want %q", name, purls[name], want)
		}
	}
	if _, ok := purls["removed"]; ok {
		t.Error("a package dpkg lists as deinstalled is in the SBOM")
	}
	if !strings.HasPrefix(purls["stdlib"], "pkg:golang/stdlib@") {
		t.Errorf("no Go standard library for the binary: %q", purls["stdlib"])
	}
	if !strings.HasPrefix(purls["github.com/google/go-containerregistry"], "pkg:golang/github.com/google/go-containerregistry@v") {
		t.Errorf("the binary's dependency go-containerregistry is missing: %v", purls)
	}
	for _, r := range doc.Relationships {
		if !ids[r.Related] || (r.Element != "SPDXRef-DOCUMENT" && !ids[r.Element]) {
			t.Errorf("relationship %+v names an unknown element", r)
		}
	}
}
