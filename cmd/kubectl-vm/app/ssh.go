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
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/portforward"
)

type sshOptions struct {
	port     int
	identity string
	options  []string
}

func newSSHCommand(o *Options) *cobra.Command {
	var so sshOptions
	cmd := &cobra.Command{
		Use:   "ssh [USER@]NAME [-- COMMAND [ARG...]]",
		Short: "Open an ssh session to a VM's guest through the API",
		Long: `Run the system ssh to a running VM's guest. The connection goes through
the VM's portforward subresource (RBAC: create on virtualmachines/portforward)
as ssh's ProxyCommand, so the guest needs no address reachable from here.
The exit code is ssh's (the remote command's).`,
		Example: `  kubectl vm ssh root@demo
  kubectl vm ssh root@demo -i ~/.ssh/id_ed25519 -- uname -a`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			user, name := "", args[0]
			if i := strings.LastIndex(name, "@"); i >= 0 {
				user, name = name[:i], name[i+1:]
			}
			t, err := o.target(name)
			if err != nil {
				return err
			}
			if _, err := o.waitForConsole(cmd.Context(), t, 0); err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find this plugin for ssh's ProxyCommand: %w", err)
			}
			argv := sshArgv(self, o.kubeFlags(), t, user, so, args[1:])
			c := exec.CommandContext(cmd.Context(), argv[0], argv[1:]...)
			c.Stdin, c.Stdout, c.Stderr = o.In, o.Out, o.ErrOut
			if err := c.Run(); err != nil {
				if exit, ok := err.(*exec.ExitError); ok {
					return exitCode(exit.ExitCode())
				}
				return fmt.Errorf("run ssh: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&so.port, "port", "p", 22, "the guest's ssh port")
	cmd.Flags().StringVarP(&so.identity, "identity", "i", "", "private key file, passed to ssh -i")
	cmd.Flags().StringArrayVarP(&so.options, "ssh-option", "o", nil, "option passed to ssh -o (repeatable)")
	return cmd
}

// exitCode is an error that carries the remote command's exit code.
type exitCode int

func (e exitCode) Error() string { return "ssh exited with status " + strconv.Itoa(int(e)) }

// sshArgv is the ssh command line: the tunnel subcommand of this plugin
// as ProxyCommand, the VM's name as the host key alias (its address is
// nobody's business here), the user's options, then the command.
func sshArgv(self string, kubeFlags []string, t *target, user string, so sshOptions, command []string) []string {
	proxy := []string{shellQuote(self), "tunnel"}
	for _, f := range kubeFlags {
		proxy = append(proxy, shellQuote(f))
	}
	proxy = append(proxy, "-n", shellQuote(t.Namespace), shellQuote(t.Name), strconv.Itoa(so.port))
	argv := []string{"ssh",
		"-o", "ProxyCommand=" + strings.Join(proxy, " "),
		"-o", "HostKeyAlias=" + t.Name + "." + t.Namespace + ".vm.vessel.dev",
	}
	if so.identity != "" {
		argv = append(argv, "-i", so.identity)
	}
	for _, opt := range so.options {
		argv = append(argv, "-o", opt)
	}
	host := t.Name
	if user != "" {
		host = user + "@" + host
	}
	argv = append(argv, host)
	if len(command) > 0 {
		argv = append(argv, "--")
		argv = append(argv, command...)
	}
	return argv
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// kubeFlags are the kubectl flags this invocation was given, for the
// ProxyCommand to reach the same cluster as the same user.
func (o *Options) kubeFlags() []string {
	var out []string
	add := func(name string, v *string) {
		if v != nil && *v != "" {
			out = append(out, "--"+name+"="+*v)
		}
	}
	f := o.ConfigFlags
	add("kubeconfig", f.KubeConfig)
	add("context", f.Context)
	add("cluster", f.ClusterName)
	add("user", f.AuthInfoName)
	add("as", f.Impersonate)
	add("server", f.APIServer)
	add("token", f.BearerToken)
	return out
}

// newTunnelCommand is ssh's ProxyCommand: one forwarded connection to a
// guest port on stdin and stdout.
func newTunnelCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:    "tunnel NAME PORT",
		Short:  "Connect stdin and stdout to a TCP port of a VM's guest (ssh's ProxyCommand)",
		Hidden: true,
		Args:   cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			port, err := strconv.Atoi(args[1])
			if err != nil || port < 1 || port > 65535 {
				return fmt.Errorf("%q is not a port", args[1])
			}
			t, err := o.target(args[0])
			if err != nil {
				return err
			}
			return o.tunnel(cmd.Context(), t, port)
		},
	}
}

// tunnel opens one data stream of the port-forward protocol (with its
// error stream, as client-go's forwarder does) and copies stdio through it.
func (o *Options) tunnel(ctx context.Context, t *target, port int) error {
	dialer, err := o.portForwardDialer(t)
	if err != nil {
		return err
	}
	conn, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		return explainForward(err, t)
	}
	defer conn.Close()
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(port))
	h.Set(corev1.PortForwardRequestIDHeader, "0")
	errStream, err := conn.CreateStream(h)
	if err != nil {
		return fmt.Errorf("forward port %d of VM %s: %w", port, t.Ref(), err)
	}
	errStream.Close() // nothing is sent on it
	remoteErr := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(errStream)
		remoteErr <- string(b)
	}()
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(h)
	if err != nil {
		return fmt.Errorf("forward port %d of VM %s: %w", port, t.Ref(), err)
	}
	go func() {
		_, _ = io.Copy(data, o.In)
		data.Close()
	}()
	_, _ = io.Copy(o.Out, data)
	select {
	case msg := <-remoteErr:
		if msg != "" {
			return fmt.Errorf("forward port %d of VM %s: %s", port, t.Ref(), msg)
		}
	case <-time.After(time.Second):
		// The guest closed the connection and the agent reported nothing.
	case <-ctx.Done():
	}
	return nil
}
