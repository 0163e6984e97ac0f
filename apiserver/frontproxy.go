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

package apiserver

import (
	"errors"
	"net/http"
	"strings"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/pkg/server/healthz"
)

// waitForFrontProxyCA keeps the server from answering API requests until it
// has loaded the front-proxy CA that kube-apiserver publishes. Until then
// the upstream request-header authenticator has no CA and every proxied
// request would be served as system:anonymous: a 403 no client retries. A
// 503 with Retry-After is retried by client-go, and /readyz stays failing
// so kube-apiserver marks the APIService unavailable meanwhile.
func waitForFrontProxyCA(config *genericapiserver.RecommendedConfig) {
	rh := config.Authentication.RequestHeaderConfig
	if rh == nil || rh.CAContentProvider == nil {
		return // no delegated authentication (a standalone server)
	}
	ca := rh.CAContentProvider
	config.AddReadyzChecks(healthz.NamedCheck("front-proxy-ca", func(*http.Request) error {
		if !loaded(ca) {
			return errors.New("the front-proxy CA (extension-apiserver-authentication) is not loaded yet")
		}
		return nil
	}))
	chain := config.BuildHandlerChainFunc
	config.BuildHandlerChainFunc = func(api http.Handler, c *genericapiserver.Config) http.Handler {
		handler := chain(api, c)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !loaded(ca) && !isHealthPath(r.URL.Path) {
				w.Header().Set("Retry-After", "1")
				http.Error(w, "the server is starting: front-proxy CA not loaded yet", http.StatusServiceUnavailable)
				return
			}
			handler.ServeHTTP(w, r)
		})
	}
}

func loaded(ca dynamiccertificates.CAContentProvider) bool {
	return len(ca.CurrentCABundleContent()) > 0
}

func isHealthPath(path string) bool {
	for _, p := range []string{"/healthz", "/livez", "/readyz"} {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}
