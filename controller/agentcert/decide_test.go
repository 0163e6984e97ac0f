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

package agentcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/vessel-vm/vessel/apiserver/agentidentity"
)

var (
	identify   = agentidentity.Identifier{ServiceAccounts: []string{agentidentity.DefaultServiceAccount}}
	agentOfHV1 = certificatesv1.CertificateSigningRequestSpec{Username: "system:vessel-agent:hv1", Groups: []string{agentidentity.Group, "system:authenticated"}}
	tokenOnN1  = certificatesv1.CertificateSigningRequestSpec{
		Username: "system:serviceaccount:vessel-system:vessel-agent",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:vessel-system", "system:authenticated"},
		Extra:    map[string]certificatesv1.ExtraValue{agentidentity.NodeNameExtra: {"n1"}},
	}
	servingUsages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
)

// request is a PEM certificate request for tmpl with a fresh key.
func request(t *testing.T, tmpl x509.CertificateRequest) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func csrFor(requester certificatesv1.CertificateSigningRequestSpec, req []byte, usages []certificatesv1.KeyUsage) *certificatesv1.CertificateSigningRequest {
	spec := requester
	spec.Request = req
	spec.SignerName = SignerName
	spec.Usages = usages
	return &certificatesv1.CertificateSigningRequest{Spec: spec}
}

func TestDecide(t *testing.T) {
	hv1 := x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:vessel-agent:hv1"}, DNSNames: []string{"hv1"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("127.0.0.1")}}
	n1 := x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:vessel-agent:n1"}, DNSNames: []string{"n1"}}
	with := func(r x509.CertificateRequest, change func(*x509.CertificateRequest)) x509.CertificateRequest {
		change(&r)
		return r
	}
	for _, tc := range []struct {
		name      string
		requester certificatesv1.CertificateSigningRequestSpec
		req       []byte
		usages    []certificatesv1.KeyUsage
		reason    string // empty: approved
		says      string // in the denial's message
	}{
		{name: "agent certificate for its own hypervisor", requester: agentOfHV1, req: request(t, hv1), usages: servingUsages},
		{name: "with key encipherment", requester: agentOfHV1, req: request(t, hv1), usages: append(servingUsages, certificatesv1.UsageKeyEncipherment)},
		{name: "node-bound service account token", requester: tokenOnN1, req: request(t, n1), usages: servingUsages},
		{
			name: "another hypervisor's name", requester: agentOfHV1, usages: servingUsages,
			req:    request(t, x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:vessel-agent:hv2"}, DNSNames: []string{"hv2"}}),
			reason: ReasonWrongSubject, says: "the agent of hypervisor hv1 may only ask for subject CN=system:vessel-agent:hv1",
		},
		{
			name: "own CN, another hypervisor's DNS name", requester: agentOfHV1, usages: servingUsages,
			req:    request(t, with(hv1, func(r *x509.CertificateRequest) { r.DNSNames = []string{"hv2"} })),
			reason: ReasonWrongNames, says: "not DNS:hv2",
		},
		{
			name: "token on n1 asking for hv1", requester: tokenOnN1, req: request(t, hv1), usages: servingUsages,
			reason: ReasonWrongSubject, says: "hypervisor n1",
		},
		{
			name: "an extra DNS name", requester: agentOfHV1, usages: servingUsages,
			req:    request(t, with(hv1, func(r *x509.CertificateRequest) { r.DNSNames = []string{"hv1", "vessel-apiserver.vessel-system.svc"} })),
			reason: ReasonWrongNames, says: "DNS:vessel-apiserver.vessel-system.svc",
		},
		{
			name: "no DNS name", requester: agentOfHV1, usages: servingUsages,
			req:    request(t, with(hv1, func(r *x509.CertificateRequest) { r.DNSNames = nil })),
			reason: ReasonWrongNames, says: "no DNS name",
		},
		{
			name: "a URI name", requester: agentOfHV1, usages: servingUsages,
			req:    request(t, with(hv1, func(r *x509.CertificateRequest) { r.URIs = []*url.URL{{Scheme: "spiffe", Host: "x"}} })),
			reason: ReasonWrongNames, says: "URI:spiffe://x",
		},
		{
			name: "an organization", requester: agentOfHV1, usages: servingUsages,
			req:    request(t, with(hv1, func(r *x509.CertificateRequest) { r.Subject.Organization = []string{"system:masters"} })),
			reason: ReasonWrongSubject, says: "O=system:masters",
		},
		{
			name: "client auth usage", requester: agentOfHV1, req: request(t, hv1),
			usages: append(servingUsages, certificatesv1.UsageClientAuth),
			reason: ReasonWrongUsages, says: `not "client auth"`,
		},
		{
			name: "no server auth usage", requester: agentOfHV1, req: request(t, hv1),
			usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature},
			reason: ReasonWrongUsages, says: `must be for "server auth"`,
		},
		{
			name: "a tenant", requester: certificatesv1.CertificateSigningRequestSpec{Username: "alice", Groups: []string{"system:authenticated"}},
			req: request(t, hv1), usages: servingUsages,
			reason: ReasonNotAnAgent, says: `user "alice" is not a node agent`,
		},
		{
			name: "agent name outside the agent group", requester: certificatesv1.CertificateSigningRequestSpec{Username: "system:vessel-agent:hv1"},
			req: request(t, hv1), usages: servingUsages,
			reason: ReasonNotAnAgent, says: "is not a node agent",
		},
		{
			name: "agent service account token not bound to a node", requester: certificatesv1.CertificateSigningRequestSpec{Username: tokenOnN1.Username, Groups: tokenOnN1.Groups},
			req: request(t, n1), usages: servingUsages,
			reason: ReasonNoHypervisor, says: "bound to a pod on a node",
		},
		{
			name: "not a certificate request", requester: agentOfHV1, usages: servingUsages,
			req:    []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
			reason: ReasonBadRequest, says: "not a PEM CERTIFICATE REQUEST",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(csrFor(tc.requester, tc.req, tc.usages), identify)
			if tc.reason == "" {
				if !d.Approve || d.Reason != ReasonApproved {
					t.Errorf("denied (%s: %s); want approved", d.Reason, d.Message)
				}
				return
			}
			if d.Approve || d.Reason != tc.reason || !strings.Contains(d.Message, tc.says) {
				t.Errorf("decision = %+v; want denied %s saying %q", d, tc.reason, tc.says)
			}
		})
	}
}
