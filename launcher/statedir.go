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

package launcher

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const modulePath = "github.com/vessel-vm/vessel"

// RepoRoot finds the Vessel repository by walking up from the working
// directory to the go.mod of the main module (tool modules under hack/tools
// have their own go.mod and are skipped), so that tests and `make up` agree
// on paths whichever directory they run in.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if isMainModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find repository root: no go.mod for %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func isMainModule(goMod string) bool {
	f, err := os.Open(goMod)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if mod, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "module "); ok {
			return strings.TrimSpace(mod) == modulePath
		}
	}
	return false
}

// DefaultStateDir is .vessel at the repository root.
func DefaultStateDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".vessel"), nil
}

// DefaultBinDir is _output/bin at the repository root, where the hack/build-*
// scripts put etcd and kube-apiserver.
func DefaultBinDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "_output", "bin"), nil
}

// layout names everything inside a state directory; see the package
// documentation for the tree.
type layout struct {
	root string // absolute
}

func newLayout(stateDir string) (layout, error) {
	if stateDir == "" {
		return layout{}, errors.New("no state directory given")
	}
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return layout{}, fmt.Errorf("resolve state directory %s: %w", stateDir, err)
	}
	return layout{root: abs}, nil
}

func (l layout) create() error {
	// The state directory holds private keys: keep it to its owner.
	for _, dir := range []string{l.root, l.pkiDir(), l.runDir(), l.logDir(), l.etcdDataDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create state directory: %w", err)
		}
	}
	return nil
}

func (l layout) pkiDir() string      { return filepath.Join(l.root, "pki") }
func (l layout) runDir() string      { return filepath.Join(l.root, "run") }
func (l layout) logDir() string      { return filepath.Join(l.root, "logs") }
func (l layout) etcdDataDir() string { return filepath.Join(l.root, "etcd") }
func (l layout) portsFile() string   { return filepath.Join(l.root, "ports.json") }

// hypervisorsFile keeps what the launcher assigned to each hypervisor
// (hypervisorPlan).
func (l layout) hypervisorsFile() string { return filepath.Join(l.root, "hypervisors.json") }

// hypervisorDir holds a hypervisor's libvirt host and agent state.
func (l layout) hypervisorDir(name string) string {
	return filepath.Join(l.root, "hypervisors", name)
}

// optionsFile holds the options the supervisor runs the control plane
// with, written by vessel-up before it starts the supervisor.
func (l layout) optionsFile() string { return filepath.Join(l.root, "supervisor.json") }

// statusFile is where the supervisor records each component's state.
func (l layout) statusFile() string { return filepath.Join(l.runDir(), "status.json") }

// lockFile is held (flock) by the one supervisor of the state directory.
func (l layout) lockFile() string { return filepath.Join(l.runDir(), "supervisor.lock") }

// pidFile and logFile take a component's name or supervisorName.
func (l layout) pidFile(process string) string {
	return filepath.Join(l.runDir(), process+".pid")
}

func (l layout) logFile(process string) string {
	return filepath.Join(l.logDir(), process+".log")
}

func (l layout) kubeconfig(user string) string {
	return filepath.Join(l.root, user+".kubeconfig")
}
