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

package agenttest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/console"
)

// GuestShell types commands into a guest's serial console through
// libvirt (the agent under test holds no console session).
type GuestShell struct {
	t      *testing.T
	in     *io.PipeWriter
	cancel context.CancelFunc
	done   <-chan error

	mu  sync.Mutex
	out bytes.Buffer
}

// Shell opens the VM's serial console on the tests' libvirtd.
func (e *Env) Shell(vm *v1alpha1.VirtualMachine) *GuestShell {
	e.T.Helper()
	ctx, cancel := context.WithCancel(e.Ctx)
	pr, pw := io.Pipe()
	s := &GuestShell{t: e.T, in: pw, cancel: cancel}
	done, err := (&console.Libvirt{Socket: e.LibvirtHost.Socket()}).Open(ctx, string(vm.UID), pr, s)
	if err != nil {
		cancel()
		e.T.Fatalf("open console of %s: %v", vm.Name, err)
	}
	s.done = done
	e.T.Cleanup(s.Close)
	return s
}

func (s *GuestShell) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

func (s *GuestShell) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.ReplaceAll(s.out.String(), "\r", "")
}

// Run types cmd and returns what it printed, trimmed. The begin and end
// markers are computed by the guest's shell ($((1))), so the echo of the
// typed line never matches them.
func (s *GuestShell) Run(cmd string, timeout time.Duration) string {
	s.t.Helper()
	id := rand.String(6)
	begin, end := "B"+id+"1\n", "E"+id+"1"
	from := len(s.text())
	if _, err := fmt.Fprintf(s.in, "echo B%s$((1)); %s; echo E%s$((1))\r", id, cmd, id); err != nil {
		s.t.Fatalf("type into the console: %v", err)
	}
	var out string
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		text := s.text()[from:]
		b := strings.Index(text, begin)
		if b < 0 {
			return false, nil
		}
		rest := text[b+len(begin):]
		e := strings.Index(rest, end)
		if e < 0 {
			return false, nil
		}
		out = strings.TrimSpace(rest[:e])
		return true, nil
	})
	if err != nil {
		s.t.Fatalf("console command %q gave no answer within %s; console:\n%s", cmd, timeout, Tail(s.text()[from:], 1500))
	}
	return out
}

func (s *GuestShell) Close() {
	_ = s.in.Close()
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
}
