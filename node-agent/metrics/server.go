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

package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	genericapifilters "k8s.io/apiserver/pkg/endpoints/filters"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	genericoptions "k8s.io/apiserver/pkg/server/options"
)

// MetricsPath is where the Prometheus endpoint is; its RBAC is `get` on
// this non-resource URL, as for kube-apiserver's own metrics.
const MetricsPath = "/metrics"

// ServerOptions configure the agent's metrics endpoint.
type ServerOptions struct {
	// BindAddress is host:port to listen on; empty serves no metrics.
	BindAddress string
	// CertFile and KeyFile are the serving certificate, re-read when they
	// change.
	CertFile, KeyFile string
	// Authentication and Authorization are delegated to kube-apiserver
	// (TokenReview, client CA, SubjectAccessReview), with the flags every
	// Kubernetes component has for it.
	Authentication *genericoptions.DelegatingAuthenticationOptions
	Authorization  *genericoptions.DelegatingAuthorizationOptions
}

// NewServerOptions are the defaults: delegated authentication and
// authorization with /healthz, /readyz and /livez open to anyone (probes)
// and system:masters allowed everything, as in kube-controller-manager.
func NewServerOptions() ServerOptions {
	return ServerOptions{
		Authentication: genericoptions.NewDelegatingAuthenticationOptions(),
		Authorization:  genericoptions.NewDelegatingAuthorizationOptions(),
	}
}

// Validate checks the options.
func (o *ServerOptions) Validate() []error {
	if o.BindAddress == "" {
		return nil
	}
	var errs []error
	if _, _, err := net.SplitHostPort(o.BindAddress); err != nil {
		errs = append(errs, fmt.Errorf("--metrics-bind-address %q: %w", o.BindAddress, err))
	}
	if o.CertFile == "" || o.KeyFile == "" {
		errs = append(errs, errors.New("the metrics endpoint needs a serving certificate (--metrics-cert-file, --metrics-key-file, or the --stream-* ones)"))
	}
	errs = append(errs, o.Authentication.Validate()...)
	errs = append(errs, o.Authorization.Validate()...)
	return errs
}

// Server serves the agent's metrics over HTTPS to authorized callers.
type Server struct {
	serving *genericapiserver.SecureServingInfo
	handler http.Handler
}

// NewServer listens on the bind address and builds the authenticator and
// authorizer (which reach kube-apiserver with the options' kubeconfigs), so
// a bad address, certificate or kubeconfig fails before anything runs.
func NewServer(o ServerOptions, registry *Registry) (*Server, error) {
	cert, err := dynamiccertificates.NewDynamicServingContentFromFiles("metrics-serving", o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("metrics serving certificate: %w", err)
	}
	listener, _, err := genericoptions.CreateListener("tcp", o.BindAddress, net.ListenConfig{})
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint: %w", err)
	}
	serving := &genericapiserver.SecureServingInfo{Listener: listener, Cert: cert}
	var authn genericapiserver.AuthenticationInfo
	var authz genericapiserver.AuthorizationInfo
	if err := o.Authentication.ApplyTo(&authn, serving, nil); err != nil {
		listener.Close()
		return nil, fmt.Errorf("metrics endpoint authentication: %w", err)
	}
	if err := o.Authorization.ApplyTo(&authz); err != nil {
		listener.Close()
		return nil, fmt.Errorf("metrics endpoint authorization: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+MetricsPath, registry.Handler())
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("GET /readyz", ok)
	mux.HandleFunc("GET /livez", ok)
	return &Server{serving: serving, handler: handlerChain(mux, &authn, &authz)}, nil
}

// Addr is where the server listens.
func (s *Server) Addr() net.Addr { return s.serving.Listener.Addr() }

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	stopped, _, err := s.serving.Serve(s.handler, 5*time.Second, ctx.Done())
	if err != nil {
		return fmt.Errorf("metrics endpoint on %s: %w", s.Addr(), err)
	}
	<-stopped
	return nil
}

// handlerChain authenticates, then authorizes every request, the way
// kube-controller-manager and kube-scheduler guard their /metrics
// (k8s.io/controller-manager/app.BuildHandlerChain): a request for
// /metrics becomes a SubjectAccessReview of verb get on that non-resource
// URL. An anonymous request is system:anonymous, refused unless an
// operator granted it.
func handlerChain(h http.Handler, authn *genericapiserver.AuthenticationInfo, authz *genericapiserver.AuthorizationInfo) http.Handler {
	resolver := &apirequest.RequestInfoFactory{}
	h = genericapifilters.WithAuthorization(h, authz.Authorizer, statusCodecs)
	h = genericapifilters.WithAuthentication(h, authn.Authenticator, genericapifilters.Unauthorized(statusCodecs), nil, nil)
	h = genericapifilters.WithRequestInfo(h, resolver)
	h = genericapifilters.WithCacheControl(h)
	return genericfilters.WithPanicRecovery(h, resolver)
}

// statusCodecs encode the metav1.Status of refusals.
var statusCodecs = func() runtime.NegotiatedSerializer {
	scheme := runtime.NewScheme()
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	scheme.AddUnversionedTypes(schema.GroupVersion{Version: "v1"}, &metav1.Status{})
	return serializer.NewCodecFactory(scheme)
}()
