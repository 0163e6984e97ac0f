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
	"encoding/json"
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

// The docker-archive is read back by skopeo (containers/image, not
// go-containerregistry) and must hold the same image: the same
// configuration (the image ID docker shows) and the same layer contents.
func TestDockerArchiveHoldsTheSameImage(t *testing.T) {
	e := requireEnv(t)
	for _, want := range imageNames {
		t.Run(want.name, func(t *testing.T) {
			oci := readLayout(t, filepath.Join(e.imagesDir, want.name))
			copied := filepath.Join(t.TempDir(), "copy")
			out, err := exec.CommandContext(t.Context(), "skopeo", "copy", "--quiet",
				"docker-archive:"+filepath.Join(e.imagesDir, want.name+".tar"), "oci:"+copied+":copy").CombinedOutput()
			if err != nil {
				t.Fatalf("skopeo copy: %v\n%s", err, out)
			}
			archived := readLayout(t, copied)
			if archived.ConfigDigest != oci.ConfigDigest {
				t.Errorf("docker-archive config %s, OCI layout config %s", archived.ConfigDigest, oci.ConfigDigest)
			}
			if !slices.Equal(archived.Config.RootFS.DiffIDs, oci.Config.RootFS.DiffIDs) {
				t.Errorf("docker-archive layers %v, OCI layout layers %v", archived.Config.RootFS.DiffIDs, oci.Config.RootFS.DiffIDs)
			}
			// docker load tags the image with what manifest.json says.
			ref, _, _ := strings.Cut(e.imageRef(t, want.name), "@")
			if tags := archiveRepoTags(t, filepath.Join(e.imagesDir, want.name+".tar")); !slices.Equal(tags, []string{ref}) {
				t.Errorf("docker-archive RepoTags %v, want [%s]", tags, ref)
			}
		})
	}
}

func archiveRepoTags(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no manifest.json: %v", file, err)
		}
		if hdr.Name != "manifest.json" {
			continue
		}
		var manifest []struct {
			RepoTags []string `json:"RepoTags"`
		}
		if err := json.NewDecoder(tr).Decode(&manifest); err != nil || len(manifest) != 1 {
			t.Fatalf("%s: manifest.json: %v (%d images)", file, err, len(manifest))
		}
		return manifest[0].RepoTags
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
