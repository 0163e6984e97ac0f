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

package virtualmachine

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	apiserverproxy "k8s.io/apiserver/pkg/util/proxy"
	"k8s.io/streaming/pkg/httpstream/wsstream"

	"github.com/vessel-vm/vessel/apis/vessel"
)

// PortForwardREST is the portforward subresource: the protocols of
// pods/portforward (SPDY, and WebSockets tunnelling SPDY as kubectl uses
// them), proxied to the agent running the VM, which connects to the
// guest's address on the managed network.
type PortForwardREST struct {
	store  *genericregistry.Store
	agents Agents
	guards Guards
}

var _ rest.Connecter = &PortForwardREST{}

func (r *PortForwardREST) New() runtime.Object      { return &vessel.VirtualMachinePortForwardOptions{} }
func (r *PortForwardREST) Destroy()                 {}
func (r *PortForwardREST) NamespaceScoped() bool    { return true }
func (r *PortForwardREST) ConnectMethods() []string { return upgradeMethods }

func (r *PortForwardREST) NewConnectOptions() (runtime.Object, bool, string) {
	return &vessel.VirtualMachinePortForwardOptions{}, false, ""
}

// Connect requires create (a WebSocket upgrade arrives as GET, which RBAC
// checks as get: forwarding reaches into the guest, as pods/portforward
// needs create), checks the VM runs, and proxies to its agent.
func (r *PortForwardREST) Connect(ctx context.Context, name string, obj runtime.Object, responder rest.Responder) (http.Handler, error) {
	opts, ok := obj.(*vessel.VirtualMachinePortForwardOptions)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a VirtualMachinePortForwardOptions: %T", obj))
	}
	for _, p := range opts.Ports {
		if p < 1 || p > 65535 {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("port %d is not between 1 and 65535", p))
		}
	}
	if err := r.guards.requireCreate(ctx, name, "portforward"); err != nil {
		return nil, err
	}
	vm, endpoint, err := r.agents.locate(ctx, r.store, name, "portforward", true)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	for _, p := range opts.Ports {
		q.Add("port", strconv.Itoa(int(p)))
	}
	location := agentURL(endpoint, "portforward", vm, q)
	handler := proxy.NewUpgradeAwareHandler(location, r.agents.Transports.ForHypervisor(vm.Spec.NodeName), false, true, agentUnreachable{responder, vm})
	// kubectl opens a WebSocket that tunnels SPDY; the agent speaks SPDY.
	tunnel := apiserverproxy.NewTunnelingHandler(handler)
	return apiserverproxy.NewTranslatingHandler(handler, tunnel, wsstream.IsWebSocketRequestWithTunnelingProtocol), nil
}

// requireCreate refuses a connect request unless its user may create the
// VM's subresource, whatever the HTTP method was.
func (g Guards) requireCreate(ctx context.Context, name, subresource string) error {
	if g.Authorizer == nil {
		return nil
	}
	info, ok := genericapirequest.RequestInfoFrom(ctx)
	if !ok {
		return apierrors.NewInternalError(fmt.Errorf("no request info for %s of %s", subresource, name))
	}
	if info.Verb == "create" {
		return nil
	}
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return apierrors.NewInternalError(fmt.Errorf("no user for %s of %s", subresource, name))
	}
	decision, reason, err := g.Authorizer.Authorize(ctx, authorizer.AttributesRecord{
		User: u, Verb: "create", Namespace: info.Namespace, APIGroup: vessel.GroupName, APIVersion: info.APIVersion,
		Resource: "virtualmachines", Subresource: subresource, Name: name, ResourceRequest: true,
	})
	if decision == authorizer.DecisionAllow {
		return nil
	}
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("check whether %s may create virtualmachines/%s of %s: %w", u.GetName(), subresource, name, err))
	}
	return apierrors.NewForbidden(vessel.Resource("virtualmachines/"+subresource), name, fmt.Errorf("user %q cannot create resource \"virtualmachines/%s\" in API group %q in the namespace %q%s", u.GetName(), subresource, vessel.GroupName, info.Namespace, suffix(reason)))
}

func suffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}
