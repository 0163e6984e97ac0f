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

// Package replicas tests the replicated control plane (`vessel-up
// --apiservers 2 --etcd-members 3`) under faults: two vessel-apiservers
// behind one APIService on a three-member etcd cluster of real etcd
// processes with TLS, and a real kube-apiserver in front. Each test keeps
// creating VMs while it kills a process with SIGKILL and then accounts
// for every create the API acknowledged: kill the replica that holds the
// controllers' Lease (the other takes over, serves and schedules; no VM
// is bound twice, pending VMs get bound), kill the etcd leader (no
// acknowledged write is lost, requests keep succeeding).
//
// No guest and no libvirt: Hypervisor objects registered by the test
// heartbeat like agents, which is all the scheduler looks at.
//
//	VESSEL_E2E=1 go test ./e2e/replicas/ -v
//
// Without the binaries in _output/bin every test skips, unless VESSEL_E2E
// is set. One control plane serves the package (TestMain); each test puts
// back what it killed.
package replicas

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vessel-vm/vessel/launcher"
)

const (
	apiServers  = 2
	etcdMembers = 3
)

var (
	shared     *launcher.Cluster
	skipReason string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if missing := missingPrerequisites(); missing != nil {
		if os.Getenv("VESSEL_E2E") == "" {
			skipReason = fmt.Sprintf("no control plane to test (%v); run `make deps build`, or set VESSEL_E2E=1 to fail instead", missing)
			return m.Run()
		}
		fmt.Fprintf(os.Stderr, "VESSEL_E2E is set but the control plane cannot start: %v\n", missing)
		return 1
	}
	stateDir, err := os.MkdirTemp("", "vessel-e2e-replicas-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	logf := func(string, ...any) {}
	if testing.Verbose() {
		logf = log.Printf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := launcher.Start(ctx, launcher.Options{
		StateDir:    stateDir,
		NoAgent:     true,
		APIServers:  apiServers,
		EtcdMembers: etcdMembers,
		Logf:        logf,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start the control plane (state and logs kept in %s): %v\n", stateDir, err)
		return 1
	}
	shared = c
	code := m.Run()
	c.Stop()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "control plane state and logs kept in %s\n", stateDir)
	} else {
		os.RemoveAll(stateDir)
	}
	return code
}

// missingPrerequisites reports what the control plane needs and this
// machine lacks.
func missingPrerequisites() error {
	bin, err := launcher.DefaultBinDir()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "vessel-apiserver"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// controlPlane returns the shared control plane, or skips t.
func controlPlane(t *testing.T) *launcher.Cluster {
	t.Helper()
	_ = os.Getenv("VESSEL_E2E")
	_ = missingPrerequisites()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	return shared
}
