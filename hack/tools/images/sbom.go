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
	"bufio"
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The SBOM lists what the image's layers actually hold, read back from them
// rather than from the build's inputs: the Debian packages dpkg recorded
// (var/lib/dpkg/status, or one file per package in var/lib/dpkg/status.d
// as distroless images keep them) and, for every Go executable, its module
// and dependencies from the build information the Go linker embeds. It is
// SPDX 2.3 JSON with package URLs, which scanners (trivy, grype) read.

type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	Name                  string            `json:"name"`
	SPDXID                string            `json:"SPDXID"`
	VersionInfo           string            `json:"versionInfo,omitempty"`
	Supplier              string            `json:"supplier,omitempty"`
	DownloadLocation      string            `json:"downloadLocation"`
	FilesAnalyzed         bool              `json:"filesAnalyzed"`
	LicenseConcluded      string            `json:"licenseConcluded"`
	LicenseDeclared       string            `json:"licenseDeclared"`
	CopyrightText         string            `json:"copyrightText"`
	SourceInfo            string            `json:"sourceInfo,omitempty"`
	PrimaryPackagePurpose string            `json:"primaryPackagePurpose,omitempty"`
	ExternalRefs          []spdxExternalRef `json:"externalRefs,omitempty"`
}

type spdxExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// debPackage is one installed package from dpkg's database.
type debPackage struct {
	name, version, arch, source, maintainer string
}

// goBinary is a Go executable found in the image.
type goBinary struct {
	path string // in the image
	info *buildinfo.BuildInfo
}

// contents is what the SBOM is made of, gathered from the layers.
type contents struct {
	dpkgStatus map[string][]byte // path -> content, later layers win
	goBinaries map[string]*buildinfo.BuildInfo
	osRelease  []byte
}

func readContents(img v1.Image) (*contents, error) {
	c := &contents{dpkgStatus: map[string][]byte{}, goBinaries: map[string]*buildinfo.BuildInfo{}}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		err = c.scan(tar.NewReader(rc))
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// maxScannedBinary bounds what is read into memory to look for Go build
// information.
const maxScannedBinary = 512 << 20

func (c *contents) scan(tr *tar.Reader) error {
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := cleanName(hdr.Name)
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		switch {
		case name == "var/lib/dpkg/status" || strings.HasPrefix(name, "var/lib/dpkg/status.d/"):
			if c.dpkgStatus[name], err = io.ReadAll(tr); err != nil {
				return err
			}
		case name == "etc/os-release" || name == "usr/lib/os-release":
			if c.osRelease, err = io.ReadAll(tr); err != nil {
				return err
			}
		case hdr.Mode&0o111 != 0 && hdr.Size > 4 && hdr.Size < maxScannedBinary:
			data, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			if !bytes.HasPrefix(data, []byte("\x7fELF")) {
				continue
			}
			if bi, err := buildinfo.Read(bytes.NewReader(data)); err == nil {
				c.goBinaries[name] = bi
			}
		}
	}
}

// debPackages parses dpkg status paragraphs, keeping installed packages.
func (c *contents) debPackages() []debPackage {
	seen := map[string]debPackage{}
	for _, file := range sortedKeys(c.dpkgStatus) {
		for _, para := range bytes.Split(c.dpkgStatus[file], []byte("\n\n")) {
			f := controlFields(para)
			if f["Package"] == "" || !strings.HasSuffix(f["Status"], " installed") {
				continue
			}
			src := f["Source"]
			if src == "" {
				src = f["Package"]
			}
			p := debPackage{name: f["Package"], version: f["Version"], arch: f["Architecture"], source: src, maintainer: f["Maintainer"]}
			seen[p.name+":"+p.arch] = p
		}
	}
	var out []debPackage
	for _, k := range sortedKeys(seen) {
		out = append(out, seen[k])
	}
	return out
}

// controlFields reads the single-line fields of a Debian control paragraph.
func controlFields(para []byte) map[string]string {
	f := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(para))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			f[k] = strings.TrimSpace(v)
		}
	}
	return f
}

// distro is "debian-12" from os-release, for package URLs.
func (c *contents) distro() string {
	f := map[string]string{}
	for _, line := range strings.Split(string(c.osRelease), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			f[k] = strings.Trim(v, `"`)
		}
	}
	if f["ID"] == "" {
		return ""
	}
	return f["ID"] + "-" + f["VERSION_ID"]
}

var spdxIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func writeSBOM(file string, img v1.Image, s imageSpec, digest v1.Hash) error {
	c, err := readContents(img)
	if err != nil {
		return fmt.Errorf("read layers: %w", err)
	}
	doc := buildSBOM(c, s, digest)
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomically(file, append(data, '\n'))
}

func buildSBOM(c *contents, s imageSpec, digest v1.Hash) spdxDocument {
	repoName := path.Base(s.repository)
	doc := spdxDocument{
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		SPDXID:            "SPDXRef-DOCUMENT",
		Name:              s.repository + ":" + s.tag,
		DocumentNamespace: "https://github.com/vessel-vm/vessel/spdx/" + repoName + "/" + s.tag + "/" + digest.Hex,
		CreationInfo: spdxCreationInfo{
			Created:  s.created.Format("2006-01-02T15:04:05Z"),
			Creators: []string{"Organization: The Vessel Authors", "Tool: vessel hack/tools/images"},
		},
	}
	ids := map[string]int{}
	newID := func(kind, name string) string {
		id := "SPDXRef-" + kind + "-" + strings.Trim(spdxIDUnsafe.ReplaceAllString(name, "-"), "-")
		ids[id]++
		if n := ids[id]; n > 1 {
			id = fmt.Sprintf("%s-%d", id, n)
		}
		return id
	}
	add := func(parent string, p spdxPackage) string {
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, spdxRelationship{Element: parent, Type: "CONTAINS", Related: p.SPDXID})
		return p.SPDXID
	}
	noAssertion := func(p spdxPackage) spdxPackage {
		p.DownloadLocation, p.LicenseConcluded, p.LicenseDeclared, p.CopyrightText = "NOASSERTION", "NOASSERTION", "NOASSERTION", "NOASSERTION"
		return p
	}

	imageID := "SPDXRef-Image-" + spdxIDUnsafe.ReplaceAllString(repoName, "-")
	image := noAssertion(spdxPackage{
		Name: s.repository, SPDXID: imageID, VersionInfo: s.tag, PrimaryPackagePurpose: "CONTAINER",
		ExternalRefs: []spdxExternalRef{purl("pkg:oci/" + repoName + "@" + url.QueryEscape(digest.String()) +
			"?repository_url=" + url.QueryEscape(s.repository) + "&tag=" + url.QueryEscape(s.tag))},
	})
	image.LicenseDeclared = orNoAssertion(s.labels["org.opencontainers.image.licenses"])
	doc.Packages = append(doc.Packages, image)
	doc.Relationships = append(doc.Relationships, spdxRelationship{Element: "SPDXRef-DOCUMENT", Type: "DESCRIBES", Related: imageID})

	distro := c.distro()
	for _, d := range c.debPackages() {
		loc := "pkg:deb/debian/" + d.name + "@" + url.QueryEscape(d.version) + "?arch=" + d.arch
		if distro != "" {
			loc += "&distro=" + distro
		}
		if d.source != d.name {
			loc += "&upstream=" + url.QueryEscape(d.source)
		}
		p := noAssertion(spdxPackage{
			Name: d.name, SPDXID: newID("deb", d.name+"-"+d.arch), VersionInfo: d.version,
			SourceInfo: "Debian source package " + d.source, PrimaryPackagePurpose: "LIBRARY",
			ExternalRefs: []spdxExternalRef{purl(loc)},
		})
		if d.maintainer != "" {
			p.Supplier = "Person: " + strings.NewReplacer("<", "(", ">", ")").Replace(d.maintainer)
		}
		add(imageID, p)
	}

	for _, binPath := range sortedKeys(c.goBinaries) {
		bi := c.goBinaries[binPath]
		version := bi.Main.Version
		if version == "" || version == "(devel)" {
			version = s.labels["org.opencontainers.image.version"]
		}
		bin := noAssertion(spdxPackage{
			Name: bi.Path, SPDXID: newID("go-binary", binPath), VersionInfo: version,
			SourceInfo: "Go executable /" + binPath + " built with " + bi.GoVersion, PrimaryPackagePurpose: "APPLICATION",
			ExternalRefs: []spdxExternalRef{purl("pkg:golang/" + bi.Main.Path + "@" + url.QueryEscape(version))},
		})
		binID := add(imageID, bin)
		std := noAssertion(spdxPackage{
			Name: "stdlib", SPDXID: newID("go-module", binPath+"-stdlib"), VersionInfo: bi.GoVersion,
			PrimaryPackagePurpose: "LIBRARY",
			ExternalRefs:          []spdxExternalRef{purl("pkg:golang/stdlib@" + strings.TrimPrefix(bi.GoVersion, "go"))},
		})
		add(binID, std)
		for _, m := range bi.Deps {
			if m.Replace != nil {
				m = m.Replace
			}
			add(binID, noAssertion(spdxPackage{
				Name: m.Path, SPDXID: newID("go-module", binPath+"-"+m.Path), VersionInfo: m.Version,
				PrimaryPackagePurpose: "LIBRARY",
				ExternalRefs:          []spdxExternalRef{purl("pkg:golang/" + m.Path + "@" + url.QueryEscape(m.Version))},
			}))
		}
	}
	return doc
}

func purl(locator string) spdxExternalRef {
	return spdxExternalRef{ReferenceCategory: "PACKAGE-MANAGER", ReferenceType: "purl", ReferenceLocator: locator}
}

func orNoAssertion(s string) string {
	if s == "" {
		return "NOASSERTION"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
