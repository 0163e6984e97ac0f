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
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// controllerWith returns a controller whose lister holds csr and whose
// client is a fake holding it too.
func controllerWith(t *testing.T, csr *certificatesv1.CertificateSigningRequest) (*Controller, *fake.Clientset, cache.Indexer) {
	t.Helper()
	caFile, keyFile := testCA(t)
	signer, err := NewSigner(caFile, keyFile, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(csr)
	factory := NewInformerFactory(client, 0)
	c, err := New(client, factory, identify, signer)
	if err != nil {
		t.Fatal(err)
	}
	indexer := factory.Certificates().V1().CertificateSigningRequests().Informer().GetIndexer()
	if err := indexer.Add(csr); err != nil {
		t.Fatal(err)
	}
	return c, client, indexer
}

func stored(t *testing.T, client *fake.Clientset, name string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	got, err := client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// A pending CSR is approved or denied with the decision's reason; an
// approved one is then signed.
func TestSyncDecidesThenSigns(t *testing.T) {
	hv1 := request(t, x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:vessel-agent:hv1"}, DNSNames: []string{"hv1"}})
	good := csrFor(agentOfHV1, hv1, servingUsages)
	good.Name = "good"
	c, client, indexer := controllerWith(t, good)
	if err := c.sync(t.Context(), "good"); err != nil {
		t.Fatal(err)
	}
	got := stored(t, client, "good")
	if len(got.Status.Conditions) != 1 || got.Status.Conditions[0].Type != certificatesv1.CertificateApproved || got.Status.Conditions[0].Reason != ReasonApproved {
		t.Fatalf("conditions after the first sync = %+v, want Approved", got.Status.Conditions)
	}
	// The informer would bring the approved CSR back.
	if err := indexer.Update(got); err != nil {
		t.Fatal(err)
	}
	if err := c.sync(t.Context(), "good"); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, client, "good"); len(got.Status.Certificate) == 0 {
		t.Error("an approved CSR of an agent for its own hypervisor was not signed")
	}

	bad := csrFor(agentOfHV1, request(t, x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:vessel-agent:hv2"}, DNSNames: []string{"hv2"}}), servingUsages)
	bad.Name = "bad"
	c, client, _ = controllerWith(t, bad)
	if err := c.sync(t.Context(), "bad"); err != nil {
		t.Fatal(err)
	}
	got = stored(t, client, "bad")
	if len(got.Status.Conditions) != 1 || got.Status.Conditions[0].Type != certificatesv1.CertificateDenied || got.Status.Conditions[0].Reason != ReasonWrongSubject {
		t.Errorf("conditions = %+v, want Denied %s", got.Status.Conditions, ReasonWrongSubject)
	}
}

// A CSR someone else approved is signed only if the rules allow it: an
// administrator's approval does not make one agent's certificate name
// another hypervisor.
func TestSyncDoesNotSignARuleBreakingCSRApprovedByOthers(t *testing.T) {
	bad := csrFor(agentOfHV1, request(t, x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:vessel-agent:hv2"}, DNSNames: []string{"hv2"}}), servingUsages)
	bad.Name = "approved-elsewhere"
	bad.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "AdminApproved"}}
	c, client, _ := controllerWith(t, bad)
	if err := c.sync(t.Context(), bad.Name); err != nil {
		t.Fatal(err)
	}
	got := stored(t, client, bad.Name)
	if len(got.Status.Certificate) > 0 {
		t.Fatal("signed a CSR for another hypervisor because someone approved it")
	}
	last := got.Status.Conditions[len(got.Status.Conditions)-1]
	if last.Type != certificatesv1.CertificateFailed || last.Reason != ReasonWrongSubject {
		t.Errorf("last condition = %+v, want Failed %s", last, ReasonWrongSubject)
	}
}
