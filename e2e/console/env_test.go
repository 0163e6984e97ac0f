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

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/cluster"
	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
)

// env is the package's control plane with an agent (e2e/framework), under
// the names these tests use.
type env struct {
	*framework.Env
	c        *cluster.Cluster
	binDir   string // freshly built kubectl-vm, vessel-apiserver, vessel-agent
	admin    versioned.Interface
	stateDir string
}

func TestMain(m *testing.M) { framework.Main(m) }

// requireEnv skips without libvirtd or kube-apiserver, unless VESSEL_E2E=1
// says they must be there, and starts the shared control plane once.
func requireEnv(tb testing.TB) *env {
	tb.Helper()
	fe := framework.Require(tb)
	return &env{Env: fe, c: fe.Cluster, binDir: fe.BinDir, admin: fe.Admin, stateDir: fe.StateDir}
}

func (e *env) runningVM(tb testing.TB, namespace, name string) *v1alpha1.VirtualMachine {
	tb.Helper()
	return e.RunningVM(tb, namespace, name)
}

func (e *env) consoleLog(vm *v1alpha1.VirtualMachine) string { return e.ConsoleLog(vm) }

func (e *env) waitLog(tb testing.TB, vm *v1alpha1.VirtualMachine, marker string) {
	tb.Helper()
	e.WaitLog(tb, vm, marker)
}
