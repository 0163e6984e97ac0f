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
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// TestConsoleThroughKubectl is what a user does: `kubectl vm console` on a
// running guest in a real terminal, a command and its answer, a quiet
// minute longer than kube-apiserver's request timeout, Ctrl+] to leave,
// and the terminal as it was before.
func TestConsoleThroughKubectl(t *testing.T) {
	e := requireEnv(t)
	name := uniqueName("demo")
	e.RunningVM(t, "team-a", name)

	t.Run("kubectl finds the plugin", func(t *testing.T) {
		out := e.kubectl(t, "admin", "", "plugin", "list")
		if !strings.Contains(out.stdout, filepath.Join(e.BinDir, "kubectl-vm")) {
			t.Errorf("kubectl plugin list does not list kubectl-vm:\n%s%s", out.stdout, out.stderr)
		}
	})

	t.Run("logs show the boot", func(t *testing.T) {
		out := e.kubectl(t, "alice", "", "vm", "-n", "team-a", "logs", name)
		if out.err != nil || !strings.Contains(out.stdout, "VESSEL-GUEST READY") {
			t.Errorf("kubectl vm logs: %v\n%s%s", out.err, tail(out.stdout, 2000), out.stderr)
		}
		out = e.kubectl(t, "alice", "", "vm", "-n", "team-a", "logs", name, "--tail", "20")
		if len(out.stdout) != 20 {
			t.Errorf("kubectl vm logs --tail 20 printed %d bytes: %q", len(out.stdout), out.stdout)
		}
	})

	t.Run("alice types in the console and detaches", func(t *testing.T) {
		term := e.startTerminal(t, "alice", "vm", "-n", "team-a", "console", name)
		before := term.attrs(t)
		term.expect(t, "escape sequence: ^]", 30*time.Second)
		if raw := term.attrs(t); raw.Lflag&(unix.ECHO|unix.ICANON) != 0 {
			t.Errorf("the terminal is not in raw mode during the session: lflag %#x", raw.Lflag)
		}
		term.send(t, "\r")
		term.expect(t, "# ", 10*time.Second)
		term.send(t, "echo $((6*7))\r")
		term.expect(t, "\r\n42\r\n", 10*time.Second)

		if !testing.Short() {
			// Longer than kube-apiserver's 60 s request timeout, which applies
			// to this subresource there, and than any ping interval.
			time.Sleep(65 * time.Second)
			term.send(t, "echo $((7*7))\r")
			term.expect(t, "\r\n49\r\n", 10*time.Second)
		}

		term.send(t, "\x1d")
		term.expect(t, "Detached from the console of VM team-a/"+name+".", 10*time.Second)
		if err := term.wait(t); err != nil {
			t.Errorf("kubectl vm console exited with %v after Ctrl+]; terminal:\n%s", err, term.output())
		}
		after := term.attrs(t)
		if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag || after.Cflag != before.Cflag {
			t.Errorf("terminal not restored: before %+v, after %+v", before, after)
		}
	})
}

// TestConsoleRefusals: bob (view) may read the log but not open the
// console; a stopped VM's console is a clear 409, from the plugin and from
// the server.
func TestConsoleRefusals(t *testing.T) {
	e := requireEnv(t)
	name := uniqueName("watched")
	vm := e.RunningVM(t, "team-b", name)
	ref := "team-b/" + name

	t.Run("bob may not open the console", func(t *testing.T) {
		out := e.kubectl(t, "bob", "", "vm", "-n", "team-b", "console", name)
		want := `you are not allowed to open the console of VM ` + ref + `: `
		if out.err == nil || !strings.Contains(out.stderr, want) || !strings.Contains(out.stderr, `cannot get resource "virtualmachines/console"`) {
			t.Errorf("bob's console: err %v, stderr:\n%s\nwant %q", out.err, out.stderr, want)
		}
		if strings.Contains(out.stderr, "Connected") {
			t.Errorf("bob was told he is connected:\n%s", out.stderr)
		}
	})

	t.Run("bob may read the log", func(t *testing.T) {
		out := e.kubectl(t, "bob", "", "vm", "-n", "team-b", "logs", name)
		if out.err != nil || !strings.Contains(out.stdout, "VESSEL-GUEST READY") {
			t.Errorf("bob's logs: %v\n%s%s", out.err, tail(out.stdout, 1000), out.stderr)
		}
	})

	t.Run("bob may not stop the VM", func(t *testing.T) {
		out := e.kubectl(t, "bob", "", "vm", "-n", "team-b", "stop", name)
		if out.err == nil || !strings.Contains(out.stderr, "you are not allowed to stop VM "+ref) {
			t.Errorf("bob's stop: %v\n%s", out.err, out.stderr)
		}
	})

	t.Run("a stopped VM has no console", func(t *testing.T) {
		out := e.kubectl(t, "admin", "", "vm", "-n", "team-b", "stop", name, "--force")
		if out.err != nil || out.stdout != "virtualmachine.vessel.dev/"+name+" stop requested\n" {
			t.Fatalf("kubectl vm stop --force: %v\n%s%s", out.err, out.stdout, out.stderr)
		}
		vms := e.Admin.VesselV1alpha1().VirtualMachines("team-b")
		err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			got, err := vms.Get(ctx, vm.Name, metav1.GetOptions{})
			return err == nil && got.Status.Phase == v1alpha1.VirtualMachineStopped, nil
		})
		if err != nil {
			t.Fatalf("VM did not stop: %v", err)
		}

		out = e.kubectl(t, "admin", "", "vm", "-n", "team-b", "console", name)
		notRunning := "VM " + ref + " is not running (phase Stopped)"
		if out.err == nil || !strings.Contains(out.stderr, notRunning) {
			t.Errorf("console of a stopped VM: %v\n%s", out.err, out.stderr)
		}

		// The server says the same to any remote-command client.
		cfg, err := e.Cluster.AdminConfig()
		if err != nil {
			t.Fatal(err)
		}
		url := e.Admin.VesselV1alpha1().RESTClient().Post().Namespace("team-b").Resource("virtualmachines").
			Name(name).SubResource("console").URL()
		exec, err := remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, url.String())
		if err != nil {
			t.Fatal(err)
		}
		err = exec.StreamWithContext(t.Context(), remotecommand.StreamOptions{Stdout: io.Discard, Tty: true})
		var upgrade *httpstream.UpgradeFailureError
		var status *apierrors.StatusError
		if !errors.As(err, &upgrade) || !errors.As(upgrade.Cause, &status) || status.Status().Code != http.StatusConflict ||
			status.Status().Message != notRunning {
			t.Errorf("console of a stopped VM through client-go = %v, want 409 %q", err, notRunning)
		}
	})
}

type result struct {
	stdout, stderr string
	err            error
}

// kubectl runs the real kubectl as user, with the freshly built plugin
// first on PATH.
func (e *env) kubectl(t *testing.T, user, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "kubectl", args...)
	cmd.Env = e.userEnv(t, user)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return result{out.String(), errOut.String(), err}
}

func (e *env) userEnv(t *testing.T, user string) []string {
	return append(os.Environ(),
		"KUBECONFIG="+e.Cluster.Kubeconfig(user),
		"KUBECACHEDIR="+t.TempDir(),
		"PATH="+e.BinDir+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
}

// terminal is a command running on a pseudo-terminal.
type terminal struct {
	ptmx, tty *os.File
	cmd       *exec.Cmd
	done      chan error

	mu  sync.Mutex
	out bytes.Buffer
	// seen is how far expect has matched.
	seen int
}

func (e *env) startTerminal(t *testing.T, user string, args ...string) *terminal {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("kubectl", args...)
	cmd.Env = append(e.userEnv(t, user), "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	term := &terminal{ptmx: ptmx, tty: tty, cmd: cmd, done: make(chan error, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { term.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		ptmx.Close()
		tty.Close()
	})
	return term
}

func (term *terminal) output() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

func (term *terminal) send(t *testing.T, s string) {
	t.Helper()
	if _, err := term.ptmx.Write([]byte(s)); err != nil {
		t.Fatalf("type %q: %v", s, err)
	}
}

// expect waits for want in the output after what earlier expects matched.
func (term *terminal) expect(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		term.mu.Lock()
		out := term.out.String()
		if i := strings.Index(out[term.seen:], want); i >= 0 {
			term.seen += i + len(want)
			term.mu.Unlock()
			return
		}
		term.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("terminal did not show %q within %s; it shows:\n%q", want, timeout, tail(out, 1500))
		}
		select {
		case err := <-term.done:
			term.done <- err
			time.Sleep(100 * time.Millisecond) // let the reader drain
			if !strings.Contains(term.output()[term.seen:], want) {
				t.Fatalf("kubectl exited (%v) before showing %q; terminal:\n%q", err, want, tail(term.output(), 1500))
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (term *terminal) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-term.done:
		term.done <- err
		return err
	case <-time.After(15 * time.Second):
		t.Fatalf("kubectl did not exit; terminal:\n%q", tail(term.output(), 1500))
		return nil
	}
}

// attrs are the terminal's settings, as the program on it sees them.
func (term *terminal) attrs(t *testing.T) unix.Termios {
	t.Helper()
	a, err := unix.IoctlGetTermios(int(term.tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return *a
}

// uniqueName keeps VMs of concurrent runs on one libvirtd apart: domain
// names derive from namespace and name.
func uniqueName(prefix string) string {
	return prefix + "-" + utilrand.String(5)
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
