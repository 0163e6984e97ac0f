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
	"crypto/tls"
	"fmt"
	"net/http"
	"sync"
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

// Transports builds the mutual-TLS transports toward agents, or nil when
// no file is set. Verification is never skipped, and each hypervisor's
// agent must present a serving certificate the agent CA issued for that
// hypervisor's name: one node's agent certificate cannot stand in for
// another's, whatever address a Hypervisor's status publishes.
func (o AgentClientOptions) Transports() (*AgentTransports, error) {
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
	return &AgentTransports{base: tlsConfig, byHypervisor: map[string]*http.Transport{}}, nil
}

// AgentTransports hands out one transport per hypervisor, each verifying
// the agent's certificate against the hypervisor's name (TLS ServerName)
// rather than the address it is dialed at. Transports are kept so that
// connections are reused.
type AgentTransports struct {
	base *tls.Config

	mu           sync.Mutex
	byHypervisor map[string]*http.Transport
}

// ForHypervisor is the transport toward the named hypervisor's agent.
func (t *AgentTransports) ForHypervisor(name string) http.RoundTripper {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr, ok := t.byHypervisor[name]; ok {
		return tr
	}
	tlsConfig := t.base.Clone()
	tlsConfig.ServerName = name
	tr := utilnet.SetTransportDefaults(&http.Transport{
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 10 * time.Second,
		// Upgrades hijack HTTP/1.1 connections.
		ForceAttemptHTTP2: false,
	})
	t.byHypervisor[name] = tr
	return tr
}
