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

package migration

import (
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vessel-vm/vessel/e2e/framework"
)

// consoleSession is a `kubectl vm console` running in the background, as
// a user would leave it open.
type consoleSession struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	mu       sync.Mutex
	out, err strings.Builder
	done     chan struct{}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// startConsole opens the console of VM ns/name as the admin.
func startConsole(t *testing.T, e *framework.Env, ns, name string) *consoleSession {
	t.Helper()
	s := &consoleSession{done: make(chan struct{})}
	s.cmd = exec.Command("kubectl", "vm", "console", "-n", ns, name, "--kubeconfig", e.Cluster.Kubeconfig("admin"))
	s.cmd.Env = append(os.Environ(), "PATH="+e.BinDir+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECACHEDIR="+t.TempDir())
	s.cmd.Stdout, s.cmd.Stderr = lockedWriter{&s.mu, &s.out}, lockedWriter{&s.mu, &s.err}
	var err error
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
	s.wait(t, "the console banner", time.Minute, func(_, errOut string) bool { return strings.Contains(errOut, "Connected to the console") })
	return s
}

// wait waits until ok holds for what the session printed (stdout, stderr).
func (s *consoleSession) wait(t *testing.T, what string, timeout time.Duration, ok func(out, errOut string) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		out, errOut := s.out.String(), s.err.String()
		s.mu.Unlock()
		if ok(out, errOut) {
			return
		}
		select {
		case <-s.done:
			t.Fatalf("kubectl vm console ended before %s; stderr:\n%s\nstdout (end):\n%s", what, errOut, tailOf(out, 2000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl vm console: no %s within %s; stderr:\n%s\nstdout (end):\n%s", what, timeout, errOut, tailOf(out, 2000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// outLen is how much the session has printed on stdout so far.
func (s *consoleSession) outLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Len()
}

// detach sends Ctrl+] and waits for the session to end.
func (s *consoleSession) detach(t *testing.T) {
	t.Helper()
	_, _ = s.stdin.Write([]byte{0x1d})
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Errorf("kubectl vm console did not end after Ctrl+]")
	}
}

func tailOf(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
