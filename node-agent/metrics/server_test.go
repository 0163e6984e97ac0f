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
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapiserver "k8s.io/apiserver/pkg/server"
)

// TestHandlerChainAuthenticatesThenAuthorizes checks what the chain asks
// the (here fake) delegated authorizer: get on the non-resource URL
// /metrics, for the user the token maps to.
func TestHandlerChainAuthenticatesThenAuthorizes(t *testing.T) {
	reg := NewRegistry(Options{Hypervisor: "hv-1", Version: "v1"})
	mux := http.NewServeMux()
	mux.Handle("GET "+MetricsPath, reg.Handler())
	var asked []authorizer.Attributes
	authn := &genericapiserver.AuthenticationInfo{Authenticator: authenticator.RequestFunc(func(r *http.Request) (*authenticator.Response, bool, error) {
		switch r.Header.Get("Authorization") {
		case "Bearer prometheus-token":
			return &authenticator.Response{User: &user.DefaultInfo{Name: "system:serviceaccount:monitoring:prometheus-k8s"}}, true, nil
		case "Bearer bob-token":
			return &authenticator.Response{User: &user.DefaultInfo{Name: "bob"}}, true, nil
		}
		return nil, false, nil
	})}
	authz := &genericapiserver.AuthorizationInfo{Authorizer: authorizer.AuthorizerFunc(func(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
		asked = append(asked, a)
		if a.GetUser().GetName() == "system:serviceaccount:monitoring:prometheus-k8s" {
			return authorizer.DecisionAllow, "", nil
		}
		return authorizer.DecisionNoOpinion, "", nil
	})}
	h := handlerChain(mux, authn, authz)

	get := func(token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", MetricsPath, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := get(""); rec.Code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", rec.Code)
	}
	if rec := get("bob-token"); rec.Code != http.StatusForbidden {
		t.Errorf("bob: %d, want 403", rec.Code)
	}
	rec := get("prometheus-token")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "vessel_agent_build_info") {
		t.Fatalf("prometheus: %d %s", rec.Code, rec.Body)
	}
	last := asked[len(asked)-1]
	if last.IsResourceRequest() || last.GetPath() != MetricsPath || last.GetVerb() != "get" {
		t.Errorf("authorizer asked %+v, want get on the non-resource URL %s", last, MetricsPath)
	}
}
