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
	"bytes"
	"compress/gzip"
	"debug/elf"
	"debug/macho"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var releasePlatforms = []struct{ os, arch string }{
	{"linux", "amd64"}, {"linux", "arm64"}, {"darwin", "amd64"}, {"darwin", "arm64"},
}

func TestReleaseChecksumsAndKrewManifestAgree(t *testing.T) {
	e := requireEnv(t)
	sums, err := os.ReadFile(filepath.Join(e.releaseDir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		sum, file, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", line)
		}
		listed[file] = sum
		if got := fileSHA256(t, filepath.Join(e.releaseDir, file)); got != sum {
			t.Errorf("%s: sha256 %s, SHA256SUMS says %s", file, got, sum)
		}
	}
	want := []string{"install.yaml", "vm.yaml", "cluster-certs.sh"}
	for _, p := range releasePlatforms {
		want = append(want, archiveName(e, p.os, p.arch))
	}
	for _, f := range want {
		if _, ok := listed[f]; !ok {
			t.Errorf("SHA256SUMS does not list %s", f)
		}
	}

	var plugin struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Version   string `json:"version"`
			Platforms []struct {
				Selector struct {
					MatchLabels map[string]string `json:"matchLabels"`
				} `json:"selector"`
				URI    string `json:"uri"`
				SHA256 string `json:"sha256"`
				Bin    string `json:"bin"`
			} `json:"platforms"`
		} `json:"spec"`
	}
	data, err := os.ReadFile(filepath.Join(e.releaseDir, "vm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &plugin); err != nil {
		t.Fatal(err)
	}
	if plugin.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || plugin.Kind != "Plugin" || plugin.Metadata.Name != "vm" {
		t.Errorf("vm.yaml is %s %s %s, want a krew Plugin named vm", plugin.APIVersion, plugin.Kind, plugin.Metadata.Name)
	}
	if plugin.Spec.Version != e.version {
		t.Errorf("plugin version %q, want %q", plugin.Spec.Version, e.version)
	}
	if len(plugin.Spec.Platforms) != len(releasePlatforms) {
		t.Errorf("%d platforms, want %d", len(plugin.Spec.Platforms), len(releasePlatforms))
	}
	for _, p := range plugin.Spec.Platforms {
		archive := archiveName(e, p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"])
		if !strings.HasSuffix(p.URI, "/"+archive) || p.SHA256 != listed[archive] || p.Bin != "kubectl-vm" {
			t.Errorf("platform %v: uri %s, sha256 %s, bin %s; want .../%s, %s, kubectl-vm", p.Selector.MatchLabels, p.URI, p.SHA256, p.Bin, archive, listed[archive])
		}
	}
}

func TestReleaseArchivesHoldThePluginForTheirPlatform(t *testing.T) {
	e := requireEnv(t)
	for _, p := range releasePlatforms {
		t.Run(p.os+"/"+p.arch, func(t *testing.T) {
			files := readArchive(t, filepath.Join(e.releaseDir, archiveName(e, p.os, p.arch)))
			names := make([]string, 0, len(files))
			for name := range files {
				names = append(names, name)
			}
			slices.Sort(names)
			if !slices.Equal(names, []string{"LICENSE", "kubectl-vm"}) {
				t.Fatalf("archive holds %v, want LICENSE and kubectl-vm", names)
			}
			bin := files["kubectl-vm"]
			var machine string
			switch p.os {
			case "linux":
				f, err := elf.NewFile(bytes.NewReader(bin))
				if err != nil {
					t.Fatal(err)
				}
				machine = map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64"}[f.Machine]
			case "darwin":
				f, err := macho.NewFile(bytes.NewReader(bin))
				if err != nil {
					t.Fatal(err)
				}
				machine = map[macho.Cpu]string{macho.CpuAmd64: "amd64", macho.CpuArm64: "arm64"}[f.Cpu]
			}
			if machine != p.arch {
				t.Errorf("kubectl-vm is for %q", machine)
			}
		})
	}

	t.Run("kubectl finds the linux/amd64 plugin as kubectl vm", func(t *testing.T) {
		files := readArchive(t, filepath.Join(e.releaseDir, archiveName(e, "linux", "amd64")))
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "kubectl-vm"), files["kubectl-vm"], 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(t.Context(), "kubectl", "vm", "--help")
		cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "console") {
			t.Errorf("kubectl vm --help: %v\n%s", err, out)
		}
	})
}

func archiveName(e *env, os, arch string) string {
	return "kubectl-vm_" + e.version + "_" + os + "_" + arch + ".tar.gz"
}

// readArchive returns the regular files of a tar.gz, checking that they
// are owned by root and that kubectl-vm is executable.
func readArchive(t *testing.T, file string) map[string][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		if hdr.Uid != 0 || hdr.Gid != 0 {
			t.Errorf("%s: %s owned by %d:%d", file, name, hdr.Uid, hdr.Gid)
		}
		if name == "kubectl-vm" && hdr.Mode&0o111 == 0 {
			t.Errorf("%s: kubectl-vm is not executable (%o)", file, hdr.Mode)
		}
		if files[name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
}
