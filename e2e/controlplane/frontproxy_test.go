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

package controlplane

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/launcher"
	"github.com/vessel-vm/vessel/launcher/pki"
)

// TestFrontProxyHeaders talks to the vessel-apiserver directly, bypassing
// kube-apiserver, as an attacker on the network would. X-Remote-User and
// X-Remote-Group are believed only from a client certificate signed by the
// front-proxy CA with an allowed name (front-proxy-client): anyone else
// who sends them is whoever their certificate says, or anonymous.
func TestFrontProxyHeaders(t *testing.T) {
	c := controlPlane(t)
	forged := http.Header{"X-Remote-User": {"admin"}, "X-Remote-Group": {"system:masters"}}

	alice, err := tls.LoadX509KeyPair(c.PKI.Users["alice"].CertFile, c.PKI.Users["alice"].KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := tls.LoadX509KeyPair(c.PKI.FrontProxyClient.CertFile, c.PKI.FrontProxyClient.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	impostor := signClientCert(t, c.PKI.FrontProxyCA, "evil-proxy")

	// What only the forged identity could do: read another tenant's VMs,
	// list hypervisors, create a VM in team-b.
	adminOnly := []struct{ method, path, verb, resource string }{
		{http.MethodGet, "/apis/vessel.dev/v1alpha1/namespaces/team-b/virtualmachines", "list", `"virtualmachines" in API group "vessel.dev" in the namespace "team-b"`},
		{http.MethodGet, "/apis/vessel.dev/v1alpha1/hypervisors", "list", `"hypervisors" in API group "vessel.dev" at the cluster scope`},
		{http.MethodPost, "/apis/vessel.dev/v1alpha1/namespaces/team-b/virtualmachines", "create", `"virtualmachines" in API group "vessel.dev" in the namespace "team-b"`},
	}
	// The vessel-apiserver's delegated authentication (k8s.io/apiserver's
	// DelegatingAuthenticatorConfig) is a union of the request-header
	// authenticator (front-proxy CA and allowed names, then X-Remote-*),
	// x509 (cluster CA, the certificate's CN) and TokenReview, behind
	// anonymous access that applies only when none of them returned an
	// error. So each caller gets exactly one answer.
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		want int
		// identity is who the server took the caller for, named in the
		// 403; a 401 names no one.
		identity string
	}{
		// No certificate: no authenticator applies and none fails, so
		// the caller is anonymous, whom RBAC denies.
		{"no client certificate", nil, http.StatusForbidden, "system:anonymous"},
		// The request-header authenticator fails (not the front-proxy
		// CA), x509 succeeds: alice, with her own rights only.
		{"a cluster-CA user certificate (alice)", &alice, http.StatusForbidden, "alice"},
		// The request-header authenticator fails (CN not allowed), and
		// so does x509 (not the cluster CA): a failed authentication is
		// 401, not a fall-back to anonymous.
		{"a front-proxy-CA certificate with a name not allowed", &impostor, http.StatusUnauthorized, ""},
	} {
		t.Run("forged headers with "+tc.name, func(t *testing.T) {
			client := vesselAPIServerClient(t, c, tc.cert)
			for _, req := range adminOnly {
				code, body := send(t, client, c, req.method, req.path, forged, newVMBody(uniqueName("forged")))
				t.Logf("%s %s: %d %s", req.method, req.path, code, body)
				if code != tc.want {
					t.Errorf("%s %s: %d, want %d:\n%s", req.method, req.path, code, tc.want, body)
					continue
				}
				switch code {
				case http.StatusForbidden:
					// The whole denial: the user the server saw, and
					// the request it refused.
					want := fmt.Sprintf("User %q cannot %s resource %s", tc.identity, req.verb, req.resource)
					if !strings.Contains(body, want) {
						t.Errorf("%s %s: 403 %q, want it to say %q", req.method, req.path, body, want)
					}
				case http.StatusUnauthorized:
					if body != "Unauthorized" {
						t.Errorf("%s %s: 401 %q, want the bare \"Unauthorized\" (nothing about who the caller is)", req.method, req.path, body)
					}
				}
			}
		})
	}

	t.Run("the front-proxy client is believed", func(t *testing.T) {
		client := vesselAPIServerClient(t, c, &proxy)
		asAlice := http.Header{"X-Remote-User": {"alice"}, "X-Remote-Group": {"system:authenticated"}}
		for _, req := range []struct {
			method, path string
			headers      http.Header
			want         int
		}{
			{http.MethodGet, "/apis/vessel.dev/v1alpha1/namespaces/team-a/virtualmachines", asAlice, http.StatusOK},
			{http.MethodPost, "/apis/vessel.dev/v1alpha1/namespaces/team-a/virtualmachines", asAlice, http.StatusCreated},
			{http.MethodGet, "/apis/vessel.dev/v1alpha1/namespaces/team-b/virtualmachines", asAlice, http.StatusForbidden},
			{http.MethodGet, "/apis/vessel.dev/v1alpha1/hypervisors", asAlice, http.StatusForbidden},
			// The same certificate asserting system:masters is the
			// admin: the certificate, not the header, is what is checked.
			{http.MethodGet, "/apis/vessel.dev/v1alpha1/hypervisors", forged, http.StatusOK},
		} {
			name := uniqueName("via-proxy")
			code, body := send(t, client, c, req.method, req.path, req.headers, newVMBody(name))
			if code != req.want {
				t.Errorf("%s %s as %s: %d, want %d:\n%s", req.method, req.path, req.headers.Get("X-Remote-User"), code, req.want, body)
			}
			if code == http.StatusForbidden && !strings.Contains(body, `User "alice"`) {
				t.Errorf("%s %s: 403 for someone else than alice:\n%s", req.method, req.path, body)
			}
			if code == http.StatusCreated {
				deleteVM(t, c, "team-a", name)
			}
		}
	})
}

func newVMBody(name string) []byte {
	return []byte(fmt.Sprintf(`{"apiVersion":"vessel.dev/v1alpha1","kind":"VirtualMachine","metadata":{"name":%q},"spec":{"runStrategy":"Halted"}}`, name))
}

func deleteVM(t *testing.T, c *launcher.Cluster, namespace, name string) {
	t.Helper()
	k := newKubectl(t, c, launcher.AdminKubeconfig)
	k.ok("delete", "vm", name, "-n", namespace)
}

// vesselAPIServerClient reaches the vessel-apiserver's own port, verifying
// its serving certificate, presenting cert (if any) as the client.
func vesselAPIServerClient(t *testing.T, c *launcher.Cluster, cert *tls.Certificate) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(c.PKI.ClusterCA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: roots}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	transport := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: 10 * time.Second}
}

func send(t *testing.T, client *http.Client, c *launcher.Cluster, method, path string, headers http.Header, body []byte) (int, string) {
	t.Helper()
	var reader io.Reader
	if method != http.MethodGet {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, c.VesselAPIServerURL()+path, reader)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	// A failure's message, unescaped; the object otherwise.
	var status metav1.Status
	if json.Unmarshal(data, &status) == nil && status.Kind == "Status" {
		return resp.StatusCode, status.Message
	}
	return resp.StatusCode, string(data)
}

// signClientCert makes a client certificate for commonName signed by ca:
// what someone who got hold of a CA's key, but is not the aggregator,
// could present.
func signClientCert(t *testing.T, ca pki.CertKey, commonName string) tls.Certificate {
	t.Helper()
	caCert, caKey := loadCA(t, ca)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func loadCA(t *testing.T, ca pki.CertKey) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	certPEM, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatalf("no PEM in %s", ca.CertFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(ca.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ = pem.Decode(keyPEM)
	if block == nil {
		t.Fatalf("no PEM in %s", ca.KeyFile)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		t.Fatalf("%s: %T cannot sign", ca.KeyFile, key)
	}
	return cert, signer
}
