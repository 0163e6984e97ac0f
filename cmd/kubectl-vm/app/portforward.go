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
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/streaming/pkg/httpstream"
)

type portForwardOptions struct {
	addresses []string
}

func newPortForwardCommand(o *Options) *cobra.Command {
	var po portForwardOptions
	cmd := &cobra.Command{
		Use:   "port-forward NAME [LOCAL_PORT:]REMOTE_PORT [...[LOCAL_PORT_N:]REMOTE_PORT_N]",
		Short: "Forward local ports to a VM's guest",
		Long: `Forward one or more local ports to TCP ports of a running VM's guest, as
kubectl port-forward does for pods: through the API server (RBAC: create on
virtualmachines/portforward) to the VM's node agent, which connects to the
guest's address on the managed network.`,
		Example: `  kubectl vm port-forward demo 8080:80
  kubectl vm port-forward demo :22 --address 0.0.0.0`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return fmt.Errorf("port-forward takes the name of one VM and at least one port, got %d arguments\nUsage: %s", len(args), cmd.UseLine())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := o.target(args[0])
			if err != nil {
				return err
			}
			return o.portForward(cmd.Context(), t, po, args[1:])
		},
	}
	cmd.Flags().StringSliceVar(&po.addresses, "address", []string{"localhost"}, "addresses to listen on (comma separated); only IP addresses or localhost; with several, all must listen")
	return cmd
}

// portForward forwards until interrupted, printing what kubectl
// port-forward prints.
func (o *Options) portForward(ctx context.Context, t *target, po portForwardOptions, ports []string) error {
	if _, err := o.waitForConsole(ctx, t, 0); err != nil {
		return err
	}
	dialer, err := o.portForwardDialer(t)
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	go func() {
		select {
		case <-signals:
		case <-ctx.Done():
		}
		close(stop)
	}()
	fw, err := portforward.NewOnAddressesForStreaming(dialer, po.addresses, ports, stop, make(chan struct{}), o.Out, o.ErrOut)
	if err != nil {
		return err
	}
	if err := fw.ForwardPorts(); err != nil {
		return explainForward(err, t)
	}
	return nil
}

// upgradeRefused is how the SPDY dialer reports a refused upgrade: the
// server's status survives only as text after it.
const upgradeRefused = "unable to upgrade connection: "

// explainForward is explain for the port-forward dialers' errors.
func explainForward(err error, t *target) error {
	const action = "forward ports of"
	if _, ok := statusOf(err); ok {
		return explain(err, action, t)
	}
	msg := err.Error()
	i := strings.Index(msg, upgradeRefused)
	if i < 0 {
		return explain(err, action, t)
	}
	reason := msg[i+len(upgradeRefused):]
	if strings.Contains(reason, " is forbidden: ") {
		return fmt.Errorf("you are not allowed to %s VM %s: %s", action, t.Ref(), reason)
	}
	return fmt.Errorf("%s VM %s: %s", action, t.Ref(), reason)
}

// portForwardDialer is kubectl's: a WebSocket that tunnels SPDY, falling
// back to plain SPDY when the upgrade is refused.
func (o *Options) portForwardDialer(t *target) (httpstream.Dialer, error) {
	u := t.Client.VesselV1alpha1().RESTClient().Post().Namespace(t.Namespace).Resource("virtualmachines").
		Name(t.Name).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(t.Config)
	if err != nil {
		return nil, err
	}
	spdyDialer := spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	tunnel, err := portforward.NewSPDYOverWebsocketDialerForStreaming(u, t.Config)
	if err != nil {
		return nil, err
	}
	return portforward.NewFallbackDialerForStreaming(tunnel, spdyDialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	}), nil
}
