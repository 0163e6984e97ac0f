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

// A library caller that wants an agent must name its Hypervisor: a
// default (the host name) would let a test's agent take a user's guests on
// the same libvirtd for its own orphans. Start refuses before it creates or
// starts anything.
func TestStartRequiresHypervisorNameForAnAgent(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	_, err := launcher.Start(t.Context(), launcher.Options{StateDir: stateDir})
	if err == nil || !strings.Contains(err.Error(), "HypervisorName") {
		t.Fatalf("Start without a hypervisor name: err = %v, want one naming Options.HypervisorName", err)
	}
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		t.Errorf("Start created the state directory before refusing (stat: %v)", err)
	}
}
