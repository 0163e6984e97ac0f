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
	"fmt"
	"net/http"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/transport"
)

// AgentClientOptions are the files the vessel-apiserver uses to reach node
// agents' stream servers (console, log) with mutual TLS.
type AgentClientOptions struct {
	// CAFile verifies the agents' serving certificates.
	CAFile string
	// CertFile and KeyFile are the apiserver's client certificate toward
	// agents; agents admit its CN (vessel-apiserver).
	CertFile string
	KeyFile  string
}

// agentClientDisabled is what users are told when console is off.
const agentClientDisabled = "the vessel-apiserver runs without --agent-ca-file, --agent-client-cert-file and --agent-client-key-file, so it cannot reach node agents"

// Transport builds the mutual-TLS transport toward agents, or nil when no
// file is set. Verification is never skipped: an agent whose certificate
// the CA did not issue for the endpoint it publishes is refused.
func (o AgentClientOptions) Transport() (*http.Transport, error) {
	if o == (AgentClientOptions{}) {
		return nil, nil
	}
	tlsConfig, err := transport.TLSConfigFor(&transport.Config{TLS: transport.TLSConfig{
		CAFile:   o.CAFile,
		CertFile: o.CertFile,
		KeyFile:  o.KeyFile,
		// Rotated client certificates are picked up without a restart.
		ReloadTLSFiles: true,
	}})
	if err != nil {
		return nil, fmt.Errorf("agent client TLS: %w", err)
	}
	return utilnet.SetTransportDefaults(&http.Transport{
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 10 * time.Second,
		// Upgrades hijack HTTP/1.1 connections.
		ForceAttemptHTTP2: false,
	}), nil
}
