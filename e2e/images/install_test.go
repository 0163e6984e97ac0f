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
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstallYAMLPassesServerDryRun sends install.yaml through the real
// kube-apiserver's validation and admission (kubectl apply
// --dry-run=server), and checks that what it would run are the images just
// built, by the digests their OCI layouts give.
func TestInstallYAMLPassesServerDryRun(t *testing.T) {
	e := requireEnv(t)
	out := e.kubectlOutput(t, "apply", "--dry-run=server", "-o", "json", "-f", filepath.Join(e.releaseDir, "install.yaml"))
	var list struct {
		Items []struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Image string `json:"image"`
						} `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kubectl apply --dry-run=server -o json: %v\n%s", err, out)
	}
	workloads := map[string]string{"Deployment/vessel-apiserver": "vessel-apiserver", "DaemonSet/vessel-agent": "vessel-agent"}
	seen := 0
	for _, item := range list.Items {
		if got := item.Metadata.Labels["app.kubernetes.io/part-of"]; got != "vessel" {
			t.Errorf("%s %s: label app.kubernetes.io/part-of=%q, want vessel", item.Kind, item.Metadata.Name, got)
		}
		if got := item.Metadata.Labels["app.kubernetes.io/version"]; got != e.version {
			t.Errorf("%s %s: label app.kubernetes.io/version=%q, want %s", item.Kind, item.Metadata.Name, got, e.version)
		}
		image, ok := workloads[item.Kind+"/"+item.Metadata.Name]
		if !ok {
			continue
		}
		seen++
		digest := readLayout(t, filepath.Join(e.imagesDir, image)).Digest
		containers := item.Spec.Template.Spec.Containers
		if len(containers) != 1 {
			t.Fatalf("%s %s: %d containers", item.Kind, item.Metadata.Name, len(containers))
		}
		got := containers[0].Image
		if !strings.HasSuffix(got, "@"+digest) || got != e.imageRef(t, image) {
			t.Errorf("%s %s runs %s; built: %s (manifest %s)", item.Kind, item.Metadata.Name, got, e.imageRef(t, image), digest)
		}
	}
	if seen != len(workloads) {
		t.Errorf("the dry run returned %d of the %d workloads:\n%s", seen, len(workloads), out)
	}
}
