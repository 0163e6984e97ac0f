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

package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// escapeByte is Ctrl+], as in telnet and virsh console.
const escapeByte = 0x1d

type consoleOptions struct {
	tail     int64
	force    bool
	readOnly bool
	timeout  time.Duration
}

func newConsoleCommand(o *Options) *cobra.Command {
	var co consoleOptions
	cmd := &cobra.Command{
		Use:   "console NAME",
		Short: "Attach to a VM's serial console",
		Long: `Attach to the serial console of a running VM. Ctrl+] detaches.

Several sessions may watch one console at once; the first holds the input
(--force takes it over, --read-only never takes it). --tail replays recent
output first. Sessions stay open while idle.`,
		Args: exactlyOneVM,
		RunE: func(cmd *cobra.Command, args []string) error {
			if co.tail < 0 {
				return errors.New("--tail must not be negative")
			}
			if co.force && co.readOnly {
				return errors.New("--force and --read-only exclude each other")
			}
			t, err := o.target(args[0])
			if err != nil {
				return err
			}
			return o.console(cmd.Context(), t, co)
		},
	}
	cmd.Flags().Int64Var(&co.tail, "tail", 0, "replay the last N bytes of console output before live output")
	cmd.Flags().BoolVar(&co.force, "force", false, "take the console input over from another session")
	cmd.Flags().BoolVar(&co.readOnly, "read-only", false, "watch without sending input")
	cmd.Flags().DurationVar(&co.timeout, "timeout", 0, "wait this long for a VM that is not running yet (0: do not wait)")
	return cmd
}

// consolePhases are the phases whose VMs have a console.
var consolePhases = map[v1alpha1.VirtualMachinePhase]bool{
	v1alpha1.VirtualMachineStarting:  true,
	v1alpha1.VirtualMachineRunning:   true,
	v1alpha1.VirtualMachinePaused:    true,
	v1alpha1.VirtualMachineStopping:  true,
	v1alpha1.VirtualMachineMigrating: true,
}

func (o *Options) console(ctx context.Context, t *target, co consoleOptions) error {
	const action = "open the console of"
	deadline := time.Now().Add(co.timeout)
	node, err := o.waitForConsole(ctx, t, co.timeout)
	if err != nil {
		return err
	}
	exec, err := o.executor(t, co)
	if err != nil {
		return err
	}

	term := newTerminal(o.In, o.Out)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	detached := make(chan struct{})
	var detachOnce sync.Once
	detach := func() {
		detachOnce.Do(func() {
			close(detached)
			// The executor ends the session when stdin ends; this is for a
			// server that does not answer.
			time.AfterFunc(2*time.Second, cancel)
		})
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(signals)
	go func() {
		select {
		case <-signals:
			term.restore()
			cancel()
		case <-ctx.Done():
		}
	}()

	// The executors read stdin only once the stream is up: that first read
	// is when to say so, not before (a refusal would follow the banner).
	banner := func() {
		fmt.Fprintf(o.ErrOut, "Connected to the console of VM %s (escape sequence: ^])%s", t.Ref(), term.newline())
	}
	in := &escapeReader{r: o.In, escape: escapeByte, onEscape: detach}
	var stdin io.Reader = &firstRead{r: in, first: banner}
	if co.readOnly {
		stdin = nil
		banner()
		// Local input is still read, for the escape key.
		go func() { _, _ = io.Copy(io.Discard, in) }()
	}
	if err := term.makeRaw(); err != nil {
		return err
	}
	var reattached time.Time
	for {
		err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: o.Out, Tty: true})
		// With --timeout, a VM that is still coming up (the agent has no
		// running domain yet) is retried.
		if status, ok := statusOf(err); ok && status.Status().Code == http.StatusConflict && time.Now().Before(deadline) {
			select {
			case <-time.After(time.Second):
				continue
			case <-ctx.Done():
			}
		}
		// Just moved: the new hypervisor's agent may need a moment for
		// the guest it received.
		if status, ok := statusOf(err); ok && time.Since(reattached) < reattachWait &&
			(status.Status().Code == http.StatusConflict || status.Status().Code == http.StatusServiceUnavailable) {
			select {
			case <-time.After(time.Second):
				continue
			case <-ctx.Done():
			}
		}
		// A live migration ends the session on the source when the guest
		// leaves it: follow the guest to its new hypervisor.
		select {
		case <-detached:
		default:
			if ctx.Err() == nil {
				if to := o.followMigration(ctx, t, node, term.newline()); to != "" {
					node, reattached = to, time.Now()
					continue
				}
			}
		}
		break
	}
	term.restore()
	select {
	case <-detached:
		fmt.Fprintf(o.ErrOut, "\nDetached from the console of VM %s.\n", t.Ref())
		return nil
	default:
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("console of VM %s closed: interrupted", t.Ref())
	}
	if err != nil {
		return explain(err, action, t)
	}
	fmt.Fprintf(o.ErrOut, "\nThe console of VM %s closed.\n", t.Ref())
	return nil
}

// followMigration is called when a console session on hypervisor node
// ended: if the VM is moving, or has moved, to another hypervisor, it
// waits (up to migrationWait) until it runs there and returns that
// hypervisor; otherwise "".
func (o *Options) followMigration(ctx context.Context, t *target, node, nl string) string {
	vms := t.Client.VesselV1alpha1().VirtualMachines(t.Namespace)
	deadline := time.Now().Add(migrationWait)
	announced := false
	for time.Now().Before(deadline) {
		vm, err := vms.Get(ctx, t.Name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		switch {
		case vm.Spec.NodeName != node && vm.Spec.NodeName != "" && consolePhases[vm.Status.Phase] && vm.Status.Phase != v1alpha1.VirtualMachineMigrating:
			fmt.Fprintf(o.ErrOut, "%sVM %s moved from hypervisor %s to %s; reattaching its console.%s", nl, t.Ref(), node, vm.Spec.NodeName, nl)
			return vm.Spec.NodeName
		case vm.Status.Phase != v1alpha1.VirtualMachineMigrating && vm.Spec.NodeName == node:
			return "" // not a migration: the console closed
		}
		if !announced {
			fmt.Fprintf(o.ErrOut, "%sVM %s is moving to another hypervisor; waiting to reattach its console...%s", nl, t.Ref(), nl)
			announced = true
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(250 * time.Millisecond):
		}
	}
	return ""
}

// migrationWait bounds how long a console waits for its VM to run on the
// hypervisor it is moving to, reattachWait how long it retries there.
const (
	migrationWait = 2 * time.Minute
	reattachWait  = 30 * time.Second
)

// waitForConsole checks the VM exists and runs, waiting up to timeout for
// it to come up, and returns the hypervisor it runs on.
func (o *Options) waitForConsole(ctx context.Context, t *target, timeout time.Duration) (string, error) {
	vms := t.Client.VesselV1alpha1().VirtualMachines(t.Namespace)
	deadline := time.Now().Add(timeout)
	announced := false
	for {
		vm, err := vms.Get(ctx, t.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				return "", fmt.Errorf("VM %s not found", t.Ref())
			}
			return "", explain(err, "read", t)
		}
		phase := vm.Status.Phase
		if consolePhases[phase] {
			return vm.Spec.NodeName, nil
		}
		if phase == "" {
			phase = v1alpha1.VirtualMachinePending
		}
		if time.Now().After(deadline) {
			if timeout > 0 {
				return "", fmt.Errorf("VM %s is not running (phase %s) after waiting %s", t.Ref(), phase, timeout)
			}
			return "", fmt.Errorf("VM %s is not running (phase %s); start it with `kubectl vm start %s`, or wait for it with --timeout", t.Ref(), phase, t.Name)
		}
		if !announced {
			fmt.Fprintf(o.ErrOut, "Waiting up to %s for VM %s to run (phase %s)...\n", timeout, t.Ref(), phase)
			announced = true
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// executor speaks WebSocket (v5.channel.k8s.io) and falls back to SPDY
// when the server or a proxy cannot upgrade to WebSocket, as kubectl
// attach does. A refusal the API server explains (403, 409, ...) is not a
// reason to try SPDY: it would be refused the same way.
func (o *Options) executor(t *target, co consoleOptions) (remotecommand.Executor, error) {
	req := t.Client.VesselV1alpha1().RESTClient().Post().
		Namespace(t.Namespace).Resource("virtualmachines").Name(t.Name).SubResource("console")
	if co.tail > 0 {
		req = req.Param("tailBytes", strconv.FormatInt(co.tail, 10))
	}
	if co.force {
		req = req.Param("force", "true")
	}
	if co.readOnly {
		req = req.Param("readOnly", "true")
	}
	url := req.URL()
	ws, err := remotecommand.NewWebSocketExecutor(t.Config, http.MethodGet, url.String())
	if err != nil {
		return nil, err
	}
	spdy, err := remotecommand.NewSPDYExecutor(t.Config, http.MethodPost, url)
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		if !httpstream.IsUpgradeFailure(err) && !httpstream.IsHTTPSProxyError(err) {
			return false
		}
		status, ok := statusOf(err)
		if !ok {
			return true
		}
		switch status.Status().Code {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusConflict,
			http.StatusServiceUnavailable, http.StatusUnprocessableEntity:
			return false
		}
		return true
	})
}

// firstRead calls first before the first read.
type firstRead struct {
	r     io.Reader
	once  sync.Once
	first func()
}

func (f *firstRead) Read(p []byte) (int, error) {
	f.once.Do(f.first)
	return f.r.Read(p)
}

// escapeReader passes input through until the escape byte, then ends (EOF)
// and calls onEscape once.
type escapeReader struct {
	r        io.Reader
	escape   byte
	onEscape func()

	mu   sync.Mutex
	done bool
}

func (e *escapeReader) Read(p []byte) (int, error) {
	e.mu.Lock()
	done := e.done
	e.mu.Unlock()
	if done {
		return 0, io.EOF
	}
	n, err := e.r.Read(p)
	for i := 0; i < n; i++ {
		if p[i] == e.escape {
			e.mu.Lock()
			e.done = true
			e.mu.Unlock()
			e.onEscape()
			return i, io.EOF
		}
	}
	return n, err
}
