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
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/launcher"
)

// testPortForward: the guest's busybox httpd answers curl on a local port
// kubectl vm port-forward opened for alice; bob (view in team-b) is
// refused with a message that says so.
func (e *env) testPortForward(t testing.TB, sh *shell, vm, bobsVM *v1alpha1.VirtualMachine) {
	body := "hello from " + vm.Name
	if _, rc := sh.run(t, "mkdir -p /www && echo '"+body+"' >/www/index.html && httpd -p 80 -h /www", 10*time.Second); rc != 0 {
		t.Fatal("httpd did not start in the guest")
	}
	local := freePort(t)
	pf, out := e.startKubectl(t, "alice", "vm", "-n", vm.Namespace, "port-forward", vm.Name, fmt.Sprintf("%d:80", local))
	want := fmt.Sprintf("Forwarding from 127.0.0.1:%d -> 80", local)
	waitLine(t, out, want, time.Minute)
	for i := range 3 { // one tunnel, several connections
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", local))
		if err != nil {
			t.Fatalf("GET %d through the port-forward: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != body {
			t.Fatalf("GET %d through the port-forward: %s %q, want %q", i, resp.Status, b, body)
		}
	}
	// Ctrl+C ends it, as it does kubectl port-forward (its output ends).
	_ = pf.Process.Signal(os.Interrupt)
	for range out {
	}

	// The ProxyCommand of kubectl vm ssh: one connection on stdio.
	out2, err := e.kubectlStdin(t, "alice", "GET / HTTP/1.0\r\n\r\n", "vm", "-n", vm.Namespace, "tunnel", vm.Name, "80")
	if err != nil || !strings.Contains(out2, "200 OK") || !strings.Contains(out2, body) {
		t.Errorf("kubectl vm tunnel: %v\n%s", err, out2)
	}

	msg, err := e.Kubectl(t, "bob", "vm", "-n", bobsVM.Namespace, "port-forward", bobsVM.Name, fmt.Sprintf("%d:80", freePort(t)))
	wantMsg := "you are not allowed to forward ports of VM " + bobsVM.Namespace + "/" + bobsVM.Name
	if err == nil || !strings.Contains(msg, wantMsg) || !strings.Contains(msg, "virtualmachines/portforward") {
		t.Errorf("bob's port-forward: %v\n%s\nwant %q", err, msg, wantMsg)
	}
}

// kubectlStdin runs kubectl as user with stdin and returns its output.
func (e *env) kubectlStdin(t testing.TB, user, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append(args, "--kubeconfig", e.Cluster.Kubeconfig(user))...)
	cmd.Env = append(os.Environ(), "PATH="+e.BinDir+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECACHEDIR="+t.TempDir())
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startKubectl starts kubectl as user in the background and returns its
// output lines.
func (e *env) startKubectl(t testing.TB, user string, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "kubectl", append(args, "--kubeconfig", e.Cluster.Kubeconfig(user))...)
	cmd.Env = append(os.Environ(), "PATH="+e.BinDir+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECACHEDIR="+t.TempDir())
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The only Wait: the output channel closing says kubectl exited.
	go func() { _ = cmd.Wait(); w.Close() }()
	t.Cleanup(func() { cancel() })
	return cmd, lines
}

func waitLine(t testing.TB, lines <-chan string, want string, timeout time.Duration) {
	t.Helper()
	var seen []string
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("kubectl ended without %q:\n%s", want, strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			if strings.Contains(l, want) {
				return
			}
		case <-deadline:
			t.Fatalf("no %q within %v:\n%s", want, timeout, strings.Join(seen, "\n"))
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := launcher.FreeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}
