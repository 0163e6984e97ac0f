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
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/proxy"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
)

// Agents is how the console and log subresources reach the node agent
// running a VM.
type Agents struct {
	// Hypervisors reads the Hypervisor a VM is bound to, for its
	// status.daemonEndpoint.
	Hypervisors rest.Getter
	// Transports speak mutual TLS to agents' stream servers: the
	// apiserver's client certificate, and the CA that issued the agents'
	// serving certificates, each for its hypervisor's name. Nil disables
	// console and log.
	Transports AgentTransports
	// Disabled says why Transport is nil, for the 503 users get.
	Disabled string
}

// AgentTransports gives the transport toward one hypervisor's agent. It
// accepts only a serving certificate issued for that hypervisor, and must
// expose its TLS configuration (an *http.Transport does) for the upgrade
// dial.
type AgentTransports interface {
	ForHypervisor(name string) http.RoundTripper
}

// ConsoleREST is the console subresource: a remote-command stream (WebSocket
// v5.channel.k8s.io, or SPDY) to the VM's serial console, proxied to the
// agent like pods/attach is to the kubelet.
type ConsoleREST struct {
	store  *genericregistry.Store
	agents Agents
	guards Guards
}

var _ rest.Connecter = &ConsoleREST{}

// upgradeMethods are both served: browsers can only open WebSockets with GET.
var upgradeMethods = []string{http.MethodGet, http.MethodPost}

func (r *ConsoleREST) New() runtime.Object      { return &vessel.VirtualMachineConsoleOptions{} }
func (r *ConsoleREST) Destroy()                 {}
func (r *ConsoleREST) NamespaceScoped() bool    { return true }
func (r *ConsoleREST) ConnectMethods() []string { return upgradeMethods }

// NewConnectOptions returns the options the query decodes into (through the
// scheme's url.Values conversion).
func (r *ConsoleREST) NewConnectOptions() (runtime.Object, bool, string) {
	return &vessel.VirtualMachineConsoleOptions{}, false, ""
}

// Connect checks the VM runs and returns a handler proxying the upgraded
// stream to its agent.
func (r *ConsoleREST) Connect(ctx context.Context, name string, obj runtime.Object, responder rest.Responder) (http.Handler, error) {
	opts, ok := obj.(*vessel.VirtualMachineConsoleOptions)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a VirtualMachineConsoleOptions: %T", obj))
	}
	if errs := validation.ValidateVirtualMachineConsoleOptions(opts); len(errs) > 0 {
		return nil, apierrors.NewInvalid(vessel.Kind("VirtualMachineConsoleOptions"), name, errs)
	}
	readOnlyReason, err := r.guards.confineInput(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	vm, endpoint, err := r.agents.locate(ctx, r.store, name, "console", true)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if readOnlyReason != "" {
		q.Set("readOnlyReason", readOnlyReason)
	}
	if opts.TailBytes > 0 {
		q.Set("tailBytes", strconv.FormatInt(opts.TailBytes, 10))
	}
	if opts.Force {
		q.Set("force", "true")
	}
	if opts.ReadOnly {
		q.Set("readOnly", "true")
	}
	location := agentURL(endpoint, "console", vm, q)
	transport := r.agents.Transports.ForHypervisor(vm.Spec.NodeName)
	return proxy.NewUpgradeAwareHandler(location, transport, false, true, agentUnreachable{responder, vm}), nil
}

// LogREST is the log subresource: recent console output of the VM, kept
// by its agent (`kubectl vm logs`).
type LogREST struct {
	store  *genericregistry.Store
	agents Agents
}

var _ rest.Connecter = &LogREST{}

func (r *LogREST) New() runtime.Object      { return &vessel.VirtualMachineConsoleOptions{} }
func (r *LogREST) Destroy()                 {}
func (r *LogREST) NamespaceScoped() bool    { return true }
func (r *LogREST) ConnectMethods() []string { return []string{http.MethodGet} }

// NewConnectOptions reuses the console's options; log reads tailBytes only.
func (r *LogREST) NewConnectOptions() (runtime.Object, bool, string) {
	return &vessel.VirtualMachineConsoleOptions{}, false, ""
}

// Connect returns a handler that fetches the VM's recent console output
// from its agent. Unlike console it works for a stopped VM, whose log
// often says why it stopped.
func (r *LogREST) Connect(ctx context.Context, name string, obj runtime.Object, responder rest.Responder) (http.Handler, error) {
	opts, ok := obj.(*vessel.VirtualMachineConsoleOptions)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a VirtualMachineConsoleOptions: %T", obj))
	}
	if errs := validation.ValidateVirtualMachineConsoleOptions(opts); len(errs) > 0 {
		return nil, apierrors.NewInvalid(vessel.Kind("VirtualMachineConsoleOptions"), name, errs)
	}
	vm, endpoint, err := r.agents.locate(ctx, r.store, name, "log", false)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if opts.TailBytes > 0 {
		q.Set("tailBytes", strconv.FormatInt(opts.TailBytes, 10))
	}
	location := agentURL(endpoint, "logs", vm, q)
	client := &http.Client{
		Transport: r.agents.Transports.ForHypervisor(vm.Spec.NodeName),
		// The agent never redirects; following one would leave the mTLS peer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ref := vm.Namespace + "/" + vm.Name
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		out, err := http.NewRequestWithContext(req.Context(), http.MethodGet, location.String(), nil)
		if err != nil {
			responder.Error(err)
			return
		}
		resp, err := client.Do(out)
		if err != nil {
			responder.Error(unreachable(vm, err))
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			responder.Error(agentError(resp, ref))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		_, _ = io.Copy(w, resp.Body)
	}), nil
}

// agentUnreachable answers a console whose agent cannot be dialed with a
// message for the tenant: the agent's address is the cluster's business.
type agentUnreachable struct {
	responder rest.Responder
	vm        *vessel.VirtualMachine
}

func (a agentUnreachable) Error(_ http.ResponseWriter, _ *http.Request, err error) {
	a.responder.Error(unreachable(a.vm, err))
}

// unreachable is the 503 for an agent that did not answer. It names the
// cause (connection refused, a timeout, a TLS failure) but never the
// address, which tells a tenant nothing they can act on and maps the
// cluster's internals for them.
func unreachable(vm *vessel.VirtualMachine, err error) error {
	return unavailable(fmt.Sprintf("cannot reach the agent of hypervisor %s, which runs VM %s/%s: %s; try again shortly",
		vm.Spec.NodeName, vm.Namespace, vm.Name, dialFailure(err, vm.Spec.NodeName)))
}

// dialFailure says in a few words why a dial to hypervisor's agent failed.
// The upgrade proxy flattens its dial error into a string, so the chain
// cannot always be unwrapped and the text is consulted too.
func dialFailure(err error, hypervisor string) string {
	msg := err.Error()
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	switch {
	case errors.As(err, &hostErr), strings.Contains(msg, "x509: certificate is valid for"), strings.Contains(msg, "x509: certificate is not valid for any names"):
		// The names a certificate is valid for are hypervisor names (and
		// perhaps addresses the agent CA signed): x509's own words say
		// which hypervisor the endpoint really belongs to.
		detail := msg
		if i := strings.Index(msg, "x509: "); i >= 0 {
			detail = msg[i:]
		}
		return fmt.Sprintf("the endpoint its Hypervisor status publishes presented a serving certificate that is not issued for hypervisor %s (%s), so it is not that hypervisor's agent and the connection was refused", hypervisor, detail)
	case errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(msg, "connection refused"):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) || strings.Contains(msg, "no route to host"):
		return "no route to its host"
	case errors.As(err, &netErr) && netErr.Timeout(), strings.Contains(msg, "timeout"), strings.Contains(msg, "deadline exceeded"):
		return "it did not answer in time"
	case errors.As(err, &certErr), strings.Contains(msg, "x509:"), strings.Contains(msg, "tls:"):
		return "the TLS handshake failed (the agent's serving certificate or the apiserver's client certificate is not trusted)"
	case errors.Is(err, io.EOF) || strings.Contains(msg, "connection reset"):
		return "the connection was closed"
	}
	return "the connection failed"
}

// unavailable is a 503 with msg as its whole message.
func unavailable(msg string) error {
	return apierrors.NewServiceUnavailable(msg)
}

// agentError turns an agent's failure answer into an API error.
func agentError(resp *http.Response, ref string) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	status := metav1.Status{}
	if json.Unmarshal(body, &status) == nil && status.Message != "" {
		if status.Code == 0 {
			status.Code = int32(resp.StatusCode)
		}
		status.Status = metav1.StatusFailure
		return &apierrors.StatusError{ErrStatus: status}
	}
	return apierrors.NewServiceUnavailable(fmt.Sprintf("the agent of VM %s answered %s", ref, resp.Status))
}

// consolePhases are the phases in which a VM has a console to attach to.
// Starting is included so a user can watch the boot, Migrating because
// the guest runs on (and its console is served by) the source until it
// has moved.
var consolePhases = map[vessel.VirtualMachinePhase]bool{
	vessel.VirtualMachineStarting:  true,
	vessel.VirtualMachineRunning:   true,
	vessel.VirtualMachinePaused:    true,
	vessel.VirtualMachineStopping:  true,
	vessel.VirtualMachineMigrating: true,
}

// locate reads the VM and the endpoint of the agent running it. With
// mustRun, a VM that is not running is a 409 saying so.
func (a Agents) locate(ctx context.Context, store *genericregistry.Store, name, subresource string, mustRun bool) (*vessel.VirtualMachine, string, error) {
	if a.Transports == nil {
		reason := a.Disabled
		if reason == "" {
			reason = "the vessel-apiserver has no client certificate for node agents"
		}
		return nil, "", apierrors.NewServiceUnavailable(fmt.Sprintf("virtualmachines/%s is disabled: %s", subresource, reason))
	}
	obj, err := store.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, "", err
	}
	vm := obj.(*vessel.VirtualMachine)
	ref := vm.Namespace + "/" + vm.Name
	if mustRun && !consolePhases[vm.Status.Phase] {
		return nil, "", conflict(vm, subresource, fmt.Sprintf("VM %s is not running (phase %s)", ref, phaseOrPending(vm)))
	}
	if vm.Spec.NodeName == "" {
		return nil, "", conflict(vm, subresource, fmt.Sprintf("VM %s is not scheduled to a hypervisor yet (phase %s)", ref, phaseOrPending(vm)))
	}
	hvObj, err := a.Hypervisors.Get(genericapirequest.WithNamespace(ctx, ""), vm.Spec.NodeName, &metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, "", apierrors.NewServiceUnavailable(fmt.Sprintf("hypervisor %s of VM %s does not exist", vm.Spec.NodeName, ref))
	}
	if err != nil {
		return nil, "", err
	}
	hv := hvObj.(*vessel.Hypervisor)
	// Fail fast when the agent is known to be away, instead of dialing an
	// endpoint that no longer answers (or hanging on one that dropped).
	ready := meta.FindStatusCondition(hv.Status.Conditions, vessel.HypervisorConditionReady)
	if msg := v1alpha1.HypervisorNotReady(hv.Name, ready, hv.Status.LastHeartbeatTime, time.Now(), nil); msg != "" {
		return nil, "", unavailable(msg + "; try again when it is back")
	}
	endpoint := hv.Status.DaemonEndpoint
	if endpoint == "" && hv.Status.LibvirtVersion == v1alpha1.SimulatedVersion {
		return nil, "", apierrors.NewServiceUnavailable(fmt.Sprintf("hypervisor %s of VM %s is simulated (vessel-agent --hypervisor-driver=sim, for scale tests): it runs no guest, so there is no console", vm.Spec.NodeName, ref))
	}
	if endpoint == "" {
		return nil, "", apierrors.NewServiceUnavailable(fmt.Sprintf("hypervisor %s of VM %s publishes no stream endpoint (status.daemonEndpoint): its agent serves no consoles", vm.Spec.NodeName, ref))
	}
	if _, _, err := net.SplitHostPort(endpoint); err != nil {
		return nil, "", apierrors.NewServiceUnavailable(fmt.Sprintf("hypervisor %s of VM %s publishes a malformed stream endpoint (status.daemonEndpoint): %v", vm.Spec.NodeName, ref, err))
	}
	return vm, endpoint, nil
}

// agentURL is https://<endpoint>/<kind>/<namespace>/<name>/<uid>?<q>. The
// UID lets the agent refuse a domain that belongs to another VM.
func agentURL(endpoint, kind string, vm *vessel.VirtualMachine, q url.Values) *url.URL {
	return &url.URL{
		Scheme:   "https",
		Host:     endpoint,
		Path:     "/" + path.Join(kind, vm.Namespace, vm.Name, string(vm.UID)),
		RawQuery: q.Encode(),
	}
}

// conflict is a 409 whose message is msg alone, without the generic
// "Operation cannot be fulfilled" preamble, since kubectl vm prints it as is.
func conflict(vm *vessel.VirtualMachine, subresource, msg string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusConflict,
		Reason:  metav1.StatusReasonConflict,
		Message: msg,
		Details: &metav1.StatusDetails{Group: vessel.GroupName, Kind: "virtualmachines/" + subresource, Name: vm.Name},
	}}
}
