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

package console

import (
	"testing"

	"github.com/vessel-vm/vessel/e2e/framework"
)

// env is the package's control plane with an agent (e2e/framework), with
// the console suite's own helpers.
type env struct {
	*framework.Env
}

func TestMain(m *testing.M) { framework.Main(m) }

// requireEnv skips without libvirtd or kube-apiserver, unless VESSEL_E2E=1
// says they must be there, and starts the shared control plane once.
func requireEnv(tb testing.TB) *env {
	tb.Helper()
	return &env{framework.Require(tb)}
}
