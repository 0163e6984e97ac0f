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

package images

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// imageNames and what each image's build pins.
var imageNames = []struct {
	name, lock, user, module string
}{
	{"vessel-apiserver", "apiserver-base.lock", "65532:65532", "k8s.io/apiserver"},
	{"vessel-agent", "agent-base.lock", "", "github.com/digitalocean/go-libvirt"},
}

func TestImageConfigurations(t *testing.T) {
	e := requireEnv(t)
	revision, err := exec.Command("git", "-C", e.root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range imageNames {
		t.Run(want.name, func(t *testing.T) {
			img := readLayout(t, filepath.Join(e.imagesDir, want.name))
			digest, err := os.ReadFile(filepath.Join(e.imagesDir, want.name+".digest"))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(digest)); got != img.Digest {
				t.Errorf("%s.digest = %s, the layout's manifest is %s", want.name, got, img.Digest)
			}
			if img.Tag != e.version {
				t.Errorf("tag %q, want %q", img.Tag, e.version)
			}
			cfg := img.Config
			if cfg.OS != "linux" || cfg.Architecture != "amd64" {
				t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
			}
			if got := cfg.Config.User; got != want.user {
				t.Errorf("user %q, want %q", got, want.user)
			}
			if got, wantEP := cfg.Config.Entrypoint, []string{"/usr/local/bin/" + want.name}; !slices.Equal(got, wantEP) {
				t.Errorf("entrypoint %v, want %v", got, wantEP)
			}
			for k, v := range map[string]string{
				"org.opencontainers.image.source":   "https://github.com/vessel-vm/vessel",
				"org.opencontainers.image.version":  e.version,
				"org.opencontainers.image.revision": strings.TrimSpace(string(revision)),
				"org.opencontainers.image.title":    want.name,
			} {
				if got := cfg.Config.Labels[k]; got != v {
					t.Errorf("label %s = %q, want %q", k, got, v)
				}
			}
			if _, err := time.Parse(time.RFC3339, cfg.Config.Labels["org.opencontainers.image.created"]); err != nil {
				t.Errorf("label org.opencontainers.image.created: %v", err)
			}
			if len(img.Manifest.Layers) != 2 || len(cfg.RootFS.DiffIDs) != 2 {
				t.Errorf("want 2 layers (base, binary), got %d (%d diffIDs)", len(img.Manifest.Layers), len(cfg.RootFS.DiffIDs))
			}
		})
	}
}

func TestSBOMListsThePinnedPackagesAndGoModules(t *testing.T) {
	e := requireEnv(t)
	for _, want := range imageNames {
		t.Run(want.name, func(t *testing.T) {
			var doc struct {
				SPDXVersion string `json:"spdxVersion"`
				Packages    []struct {
					Name         string `json:"name"`
					SPDXID       string `json:"SPDXID"`
					VersionInfo  string `json:"versionInfo"`
					ExternalRefs []struct {
						Locator string `json:"referenceLocator"`
					} `json:"externalRefs"`
				} `json:"packages"`
			}
			readJSON(t, filepath.Join(e.imagesDir, want.name+".spdx.json"), &doc)
			if doc.SPDXVersion != "SPDX-2.3" {
				t.Errorf("spdxVersion %q", doc.SPDXVersion)
			}
			debs := map[string]string{}
			modules := map[string]bool{}
			binaries := 0
			for _, p := range doc.Packages {
				for _, ref := range p.ExternalRefs {
					switch {
					case strings.HasPrefix(ref.Locator, "pkg:deb/debian/"):
						debs[p.Name] = p.VersionInfo
					case strings.HasPrefix(p.SPDXID, "SPDXRef-go-binary-"):
						binaries++
					case strings.HasPrefix(ref.Locator, "pkg:golang/"):
						modules[p.Name] = true
					}
				}
			}
			pinned := lockPackages(t, filepath.Join(e.root, "hack", "images", want.lock))
			for name, version := range pinned {
				if got, ok := debs[name]; !ok || got != version {
					t.Errorf("SBOM has %s %q, the lock pins %q", name, got, version)
				}
			}
			for name := range debs {
				if _, ok := pinned[name]; !ok {
					t.Errorf("SBOM lists %s, which the lock does not pin", name)
				}
			}
			if binaries != 1 || !modules[want.module] || !modules["stdlib"] {
				t.Errorf("SBOM: %d Go binaries (want 1), modules %s and stdlib listed: %v, %v", binaries, want.module, modules[want.module], modules["stdlib"])
			}
		})
	}
}

// lockPackages reads a lock file's package=version lines.
func lockPackages(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, version, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not package=version", file, line)
		}
		out[name] = version
	}
	if len(out) == 0 {
		t.Fatalf("%s pins nothing", file)
	}
	return out
}

// The docker-archive must hold the same image as the OCI layout: the same
// configuration, byte for byte (its digest is the image ID docker shows),
// as skopeo (containers/image, not go-containerregistry) reads it, and
// layers whose contents are the configuration's diff IDs.
func TestDockerArchiveHoldsTheSameImage(t *testing.T) {
	e := requireEnv(t)
	for _, want := range imageNames {
		t.Run(want.name, func(t *testing.T) {
			oci := readLayout(t, filepath.Join(e.imagesDir, want.name))
			file := filepath.Join(e.imagesDir, want.name+".tar")
			config, err := exec.CommandContext(t.Context(), "skopeo", "inspect", "--raw", "--config", "docker-archive:"+file).Output()
			if err != nil {
				t.Fatalf("skopeo inspect --config: %v", err)
			}
			if got := "sha256:" + sha256Hex(config); got != oci.ConfigDigest {
				t.Errorf("docker-archive config %s, OCI layout config %s", got, oci.ConfigDigest)
			}
			archive := readDockerArchive(t, file)
			// docker load tags the image with what manifest.json says.
			ref, _, _ := strings.Cut(e.imageRef(t, want.name), "@")
			if !slices.Equal(archive.repoTags, []string{ref}) {
				t.Errorf("docker-archive RepoTags %v, want [%s]", archive.repoTags, ref)
			}
			if "sha256:"+strings.TrimPrefix(archive.config, "sha256:") != oci.ConfigDigest {
				t.Errorf("docker-archive manifest.json names config %s, want %s", archive.config, oci.ConfigDigest)
			}
			if !slices.Equal(archive.diffIDs, oci.Config.RootFS.DiffIDs) {
				t.Errorf("docker-archive layer contents %v, OCI layout diff IDs %v", archive.diffIDs, oci.Config.RootFS.DiffIDs)
			}
		})
	}
}

type dockerArchive struct {
	repoTags []string
	config   string
	// diffIDs are the digests of the layers' uncompressed contents.
	diffIDs []string
}

// readDockerArchive reads manifest.json of a docker-archive and hashes the
// uncompressed contents of the layers it names.
func readDockerArchive(t *testing.T, file string) dockerArchive {
	t.Helper()
	var manifest []struct {
		Config   string   `json:"Config"`
		RepoTags []string `json:"RepoTags"`
		Layers   []string `json:"Layers"`
	}
	layers := map[string]string{}
	err := eachTarEntry(file, func(hdr *tar.Header, r io.Reader) error {
		if hdr.Name == "manifest.json" {
			return json.NewDecoder(r).Decode(&manifest)
		}
		if !strings.HasSuffix(hdr.Name, ".tar.gz") {
			return nil
		}
		gz, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, gz); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		layers[hdr.Name] = "sha256:" + hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	if len(manifest) != 1 {
		t.Fatalf("%s: manifest.json lists %d images, want 1", file, len(manifest))
	}
	out := dockerArchive{repoTags: manifest[0].RepoTags, config: manifest[0].Config}
	for _, l := range manifest[0].Layers {
		diffID, ok := layers[l]
		if !ok {
			t.Fatalf("%s: manifest.json names the layer %s, which is not in the archive", file, l)
		}
		out.diffIDs = append(out.diffIDs, diffID)
	}
	return out
}

func eachTarEntry(file string, fn func(*tar.Header, io.Reader) error) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(hdr, tr); err != nil {
			return err
		}
	}
}

// TestImagesAreReproducible builds everything again from scratch (only the
// downloaded Debian packages are shared) and expects the same digests.
func TestImagesAreReproducible(t *testing.T) {
	e := requireEnv(t)
	out := t.TempDir()
	cache := filepath.Join(out, "cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, shared := range []string{"agent-debs", "apiserver-debs", "apt"} {
		if err := os.Symlink(filepath.Join(e.imagesDir, "cache", shared), filepath.Join(cache, shared)); err != nil {
			t.Fatal(err)
		}
	}
	begin := time.Now()
	if log, err := e.script(t.Context(), []string{"OUT=" + out, "CACHE_DIR=" + cache}, "hack/build-images.sh"); err != nil {
		t.Fatalf("second build: %v\n%s", err, log)
	}
	t.Logf("rebuilt both images and their bases in %v", time.Since(begin).Round(time.Second))
	for _, want := range imageNames {
		first := readLayout(t, filepath.Join(e.imagesDir, want.name))
		second := readLayout(t, filepath.Join(out, want.name))
		if first.Digest != second.Digest {
			t.Errorf("%s: %s, then %s", want.name, first.Digest, second.Digest)
			for i := range first.Manifest.Layers {
				if i < len(second.Manifest.Layers) && first.Manifest.Layers[i].Digest != second.Manifest.Layers[i].Digest {
					t.Errorf("%s: layer %d differs: %s, then %s", want.name, i, first.Manifest.Layers[i].Digest, second.Manifest.Layers[i].Digest)
				}
			}
		}
		if a, b := fileSHA256(t, filepath.Join(e.imagesDir, want.name+".tar")), fileSHA256(t, filepath.Join(out, want.name+".tar")); a != b {
			t.Errorf("%s.tar: sha256 %s, then %s", want.name, a, b)
		}
	}
}
