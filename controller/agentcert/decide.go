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

// Package agentcert approves and signs node agents' serving certificates,
// requested through the Kubernetes CSR API with signer
// vessel.dev/agent-serving (as kubelets request theirs with
// --rotate-server-certificates): an agent gets a certificate for its own
// hypervisor's name and nothing else, so that the vessel-apiserver, which
// expects each agent's certificate to name its hypervisor, can tell one
// agent from another.
package agentcert

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/vessel-vm/vessel/apiserver/agentidentity"
)

// SignerName is the signer agents ask for.
const SignerName = "vessel.dev/agent-serving"

// Reasons of the Approved and Denied conditions.
const (
	ReasonApproved      = "AgentServingCertificate"
	ReasonNotAnAgent    = "RequesterNotAnAgent"
	ReasonNoHypervisor  = "AgentWithoutHypervisor"
	ReasonBadRequest    = "InvalidCertificateRequest"
	ReasonWrongSubject  = "WrongSubject"
	ReasonWrongNames    = "WrongNames"
	ReasonWrongUsages   = "WrongUsages"
	ReasonFailedSigning = "SigningFailed"
)

// allowedUsages are what a serving certificate may be for: server auth,
// with the key usages TLS needs (key encipherment for RSA key exchange).
var allowedUsages = map[certificatesv1.KeyUsage]bool{
	certificatesv1.UsageServerAuth:       true,
	certificatesv1.UsageDigitalSignature: true,
	certificatesv1.UsageKeyEncipherment:  true,
}

// Decision is what to do with a CSR.
type Decision struct {
	// Approve is true when the CSR may be signed.
	Approve bool
	// Reason and Message go on the Approved or Denied condition; Message
	// says why, for the agent's operator.
	Reason, Message string
}

func deny(reason, format string, args ...any) Decision {
	return Decision{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Decide approves a CSR for signer vessel.dev/agent-serving only when the
// requester is the agent of hypervisor X (as the agent authorizer and
// admission see it: a client certificate system:vessel-agent:X, or an
// agent service account with a token bound to a pod on node X) and the
// request asks exactly for CN system:vessel-agent:X, DNS name X (any IP
// addresses), and server-auth usages. Anything else is denied, saying why.
// The certificate's lifetime is the signer's to bound, not the request's.
func Decide(csr *certificatesv1.CertificateSigningRequest, identify agentidentity.Identifier) Decision {
	requester := requester(csr)
	who := identify.Identify(requester)
	if !who.IsAgent {
		return deny(ReasonNotAnAgent, "%s is not a node agent: only %s<hypervisor> in group %s, or an agent service account with a token bound to a pod on a node, may request %s certificates",
			describe(requester), agentidentity.UserPrefix, agentidentity.Group, SignerName)
	}
	if who.Hypervisor == "" {
		return deny(ReasonNoHypervisor, "%s is an agent of no hypervisor: %s", describe(requester), who.Why)
	}
	hv := who.Hypervisor

	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return deny(ReasonBadRequest, "spec.request is not a PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return deny(ReasonBadRequest, "spec.request does not parse: %v", err)
	}
	if err := req.CheckSignature(); err != nil {
		return deny(ReasonBadRequest, "spec.request is not signed by its key: %v", err)
	}

	wantCN := agentidentity.UserPrefix + hv
	if s := req.Subject; s.CommonName != wantCN || len(s.Organization) > 0 || len(s.OrganizationalUnit) > 0 ||
		len(s.Country) > 0 || len(s.Province) > 0 || len(s.Locality) > 0 || len(s.StreetAddress) > 0 ||
		len(s.PostalCode) > 0 || s.SerialNumber != "" {
		return deny(ReasonWrongSubject, "the agent of hypervisor %s may only ask for subject CN=%s, not %q", hv, wantCN, req.Subject.String())
	}
	if !slices.Equal(req.DNSNames, []string{hv}) || len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		return deny(ReasonWrongNames, "the agent of hypervisor %s may only ask for the DNS name %s (and IP addresses), not %s", hv, hv, names(req))
	}
	hasServerAuth := false
	for _, u := range csr.Spec.Usages {
		if !allowedUsages[u] {
			return deny(ReasonWrongUsages, "an agent serving certificate is for %q (with %q, %q), not %q", certificatesv1.UsageServerAuth, certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, u)
		}
		hasServerAuth = hasServerAuth || u == certificatesv1.UsageServerAuth
	}
	if !hasServerAuth {
		return deny(ReasonWrongUsages, "an agent serving certificate must be for %q", certificatesv1.UsageServerAuth)
	}
	return Decision{Approve: true, Reason: ReasonApproved, Message: fmt.Sprintf("serving certificate of the agent of hypervisor %s, requested by that agent", hv)}
}

// requester is the user who created the CSR, as kube-apiserver recorded it.
func requester(csr *certificatesv1.CertificateSigningRequest) user.Info {
	extra := map[string][]string{}
	for k, v := range csr.Spec.Extra {
		extra[k] = v
	}
	return &user.DefaultInfo{Name: csr.Spec.Username, UID: csr.Spec.UID, Groups: csr.Spec.Groups, Extra: extra}
}

func describe(u user.Info) string {
	if nodes := u.GetExtra()[agentidentity.NodeNameExtra]; len(nodes) > 0 {
		return fmt.Sprintf("user %q (on node %s)", u.GetName(), strings.Join(nodes, ", "))
	}
	return fmt.Sprintf("user %q", u.GetName())
}

// names lists the subject alternative names a request asks for.
func names(req *x509.CertificateRequest) string {
	var all []string
	for _, n := range req.DNSNames {
		all = append(all, "DNS:"+n)
	}
	for _, n := range req.EmailAddresses {
		all = append(all, "email:"+n)
	}
	for _, u := range req.URIs {
		all = append(all, "URI:"+u.String())
	}
	if len(all) == 0 {
		return "no DNS name"
	}
	return strings.Join(all, ", ")
}
