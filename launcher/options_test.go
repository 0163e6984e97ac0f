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

package launcher_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vessel-vm/vessel/launcher"
)

// A library caller that wants hypervisors must name them: Hypervisor
// names are cluster-wide, and a default (the host name) would make two
// test control planes register the same ones. Start refuses bad names too,
// and names whose libvirtd socket would not fit a UNIX socket path, before
// it creates or starts anything.
func TestStartRequiresGoodHypervisorNames(t *testing.T) {
	for _, tc := range []struct {
		name        string
		hypervisors []string
		want        string
	}{
		{"none", nil, "Options.Hypervisors"},
		{"not a DNS name", []string{"Bad_Name"}, `hypervisor name "Bad_Name"`},
		{"twice", []string{"hv-1", "hv-1"}, `hypervisor "hv-1" is named twice`},
		{"too long for the socket", []string{strings.Repeat("h", 100)}, "more than a UNIX socket takes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stateDir := filepath.Join(t.TempDir(), "state")
			_, err := launcher.Start(t.Context(), launcher.Options{StateDir: stateDir, Hypervisors: tc.hypervisors})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start: err = %v, want one saying %q", err, tc.want)
			}
			if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
				t.Errorf("Start created the state directory before refusing (stat: %v)", err)
			}
		})
	}
}
