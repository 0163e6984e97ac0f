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

package network

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/remotecommand"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }

type env struct {
	*framework.Env
}

// The operator's bridges of this suite: the cluster allows both, the
// agents only the first (TestOperatorBridge).
const (
	lanBridge   = "vessel-lan"
	otherBridge = "vessel-other"
)

func requireEnv(tb testing.TB) *env {
	tb.Helper()
	return &env{framework.RequireWith(tb, framework.Config{
		VesselAPIServerArgs: []string{"--allowed-bridges=" + lanBridge + "," + otherBridge},
		AgentArgs:           []string{"--allowed-bridges=" + lanBridge},
	})}
}

// shell is a guest's serial console, opened through kube-apiserver as
// the admin, used as a shell: run sends a command and returns its output
// and exit code.
type shell struct {
	in     *io.PipeWriter
	cancel context.CancelFunc
	mu     sync.Mutex
	out    strings.Builder
	n      int
}

func (s *shell) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

func (s *shell) since(mark int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()[mark:]
}

func (e *env) shell(t testing.TB, vm *v1alpha1.VirtualMachine) *shell {
	t.Helper()
	cfg, err := e.Cluster.AdminConfig()
	if err != nil {
		t.Fatal(err)
	}
	url := e.Admin.VesselV1alpha1().RESTClient().Post().Namespace(vm.Namespace).Resource("virtualmachines").
		Name(vm.Name).SubResource("console").URL()
	exec, err := remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, url.String())
	if err != nil {
		t.Fatal(err)
	}
	r, w := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	s := &shell{in: w, cancel: cancel}
	go exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: r, Stdout: s, Tty: true})
	t.Cleanup(func() { w.Close(); cancel() })
	// Quiet the kernel and make sure a prompt answers.
	s.run(t, "echo 1 >/proc/sys/kernel/printk", 30*time.Second)
	return s
}

// run runs cmd in the guest and returns what it printed and its exit
// code. The end marker is computed by the shell, so the echoed command
// line never matches it.
func (s *shell) run(t testing.TB, cmd string, timeout time.Duration) (string, int) {
	t.Helper()
	s.n++
	s.mu.Lock()
	mark := s.out.Len()
	s.mu.Unlock()
	id := s.n
	line := fmt.Sprintf("%s; echo \"END-$((%d+0))-RC-$?-\"\r", cmd, id)
	if _, err := s.in.Write([]byte(line)); err != nil {
		t.Fatalf("send %q: %v", cmd, err)
	}
	want := fmt.Sprintf("END-%d-RC-", id)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		out := s.since(mark)
		if i := strings.Index(out, want); i >= 0 {
			rest := out[i+len(want):]
			if j := strings.Index(rest, "-"); j >= 0 {
				var rc int
				fmt.Sscanf(rest[:j], "%d", &rc)
				return out[:i], rc
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("guest command %q: no end within %v; output:\n%s", cmd, timeout, s.since(mark))
	return "", -1
}
