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
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/launcher"
	"github.com/vessel-vm/vessel/node-agent/servingcert"
)

const signer = "vessel.dev/agent-serving"

func TestMain(m *testing.M) { framework.Main(m) }

func requireEnv(tb testing.TB) *framework.Env {
	tb.Helper()
	return framework.RequireWith(tb, framework.Config{AgentServingCertsFromCSR: true})
}

// TestAgentsServeWithCertificatesFromCSRs: each agent, run with
// --stream-cert-dir, holds a certificate the agent CA issued for its own
// hypervisor's name through an approved CSR it made itself, and a tenant's
// console works on it.
func TestAgentsServeWithCertificatesFromCSRs(t *testing.T) {
	e := requireEnv(t)
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(e.Cluster.PKI.AgentCA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(caPEM)
	csrs, err := coreClient(t, e, launcher.AdminKubeconfig).CertificatesV1().CertificateSigningRequests().List(t.Context(), metav1.ListOptions{FieldSelector: "spec.signerName=" + signer})
	if err != nil {
		t.Fatal(err)
	}
	for _, hv := range e.Hypervisors {
		t.Run(hv.Name, func(t *testing.T) {
			cert := servingCert(t, hv)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: hv.Name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("the agent's certificate is not the agent CA's serving certificate for %s: %v", hv.Name, err)
			}
			if cert.Subject.CommonName != "system:vessel-agent:"+hv.Name {
				t.Errorf("CN %q", cert.Subject.CommonName)
			}
			var issued bool
			for _, csr := range csrs.Items {
				if csr.Spec.Username == "system:vessel-agent:"+hv.Name && bytes.Contains(csr.Status.Certificate, pemOf(cert)) && approved(&csr) {
					issued = true
				}
			}
			if !issued {
				t.Errorf("no approved CSR of signer %s by the agent of %s issued its certificate", signer, hv.Name)
			}
		})
	}

	vm := e.RunningVM(t, "team-a", uniqueName("csr-console"))
	stdin, out, done := console(t, e, "alice", "team-a", vm.Name)
	defer stdin.Close()
	for _, line := range []string{"\r", "echo $((6*7))\r"} {
		if _, err := io.WriteString(stdin, line); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := waitFor(out, "\r\n42\r\n", 30*time.Second); err != nil {
		select {
		case err := <-done:
			t.Fatalf("console ended: %v; output %q", err, out.String())
		default:
		}
		t.Fatalf("no answer through the console of %s: %v; output %q", vm.Status.NodeName, err, out.String())
	}
}

// TestAnotherHypervisorsCertificateIsRefused: the attack a compromised node
// could make. Holding its own agent's key (hypervisor A's, from A's agent
// state directory), it serves TLS and gets hypervisor B's
// status.daemonEndpoint pointed at itself (here the admin patches it while
// B's agent is down, so no heartbeat puts it back). The vessel-apiserver
// refuses the endpoint, and the tenant opening the console of their VM on
// B reads why; nothing reaches the impostor.
func TestAnotherHypervisorsCertificateIsRefused(t *testing.T) {
	e := requireEnv(t)
	name := uniqueName("impersonated")
	vm := e.RunningVM(t, "team-a", name)
	victim := vm.Status.NodeName
	var attacker launcher.Hypervisor
	for _, hv := range e.Hypervisors {
		if hv.Name != victim {
			attacker = hv
		}
	}
	keyPair, err := tls.LoadX509KeyPair(servingcert.CurrentFile(launcher.ServingCertDir(attacker)), servingcert.CurrentFile(launcher.ServingCertDir(attacker)))
	if err != nil {
		t.Fatalf("the attacker's own agent key pair: %v", err)
	}
	var requests atomic.Int32
	impostor := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { requests.Add(1); w.WriteHeader(http.StatusOK) }),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{keyPair}},
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", impostor.TLSConfig)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = impostor.Serve(ln) })
	t.Cleanup(func() { impostor.Close(); wg.Wait() })

	if err := e.Cluster.KillAgent(victim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := e.Cluster.RestartAgent(ctx, victim); err != nil {
			t.Errorf("restart the agent of %s: %v", victim, err)
		}
	})
	hvs := e.Admin.VesselV1alpha1().Hypervisors()
	hv, err := hvs.Get(t.Context(), victim, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hv.Status.DaemonEndpoint = ln.Addr().String()
	if _, err := hvs.UpdateStatus(t.Context(), hv, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("point %s's daemonEndpoint at the impostor: %v", victim, err)
	}

	// Within the heartbeat monitor's 40 s grace, the hypervisor is still
	// Ready: the endpoint is dialed, and its certificate refused.
	want := fmt.Sprintf("cannot reach the agent of hypervisor %s, which runs VM team-a/%s: the endpoint its Hypervisor status publishes presented a serving certificate that is not issued for hypervisor %s (x509: certificate is valid for %s, not %s)",
		victim, name, victim, attacker.Name, victim)
	for _, cmd := range [][]string{{"console", name}, {"logs", name}} {
		t.Run("kubectl vm "+cmd[0], func(t *testing.T) {
			stdout, stderr, err := kubectl(t, e, "alice", append([]string{"vm", "-n", "team-a"}, cmd...)...)
			if err == nil || !strings.Contains(stderr, want) {
				t.Errorf("kubectl vm %s: err %v, stdout %q, stderr:\n%s\nwant %q", cmd[0], err, stdout, stderr, want)
			}
			if strings.Contains(stderr, ln.Addr().String()) {
				t.Errorf("the refusal shows the endpoint's address:\n%s", stderr)
			}
		})
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the impostor received %d requests", n)
	}
}

// TestACSRForAnotherHypervisorIsDenied: an agent asks, with its own
// credentials, for a certificate naming another hypervisor; the
// vessel-apiserver denies it and says why, and signs nothing.
func TestACSRForAnotherHypervisorIsDenied(t *testing.T) {
	e := requireEnv(t)
	a, b := e.Hypervisors[0].Name, e.Hypervisors[1].Name
	client := coreClient(t, e, launcher.AgentComponent(a))
	csrs := client.CertificatesV1().CertificateSigningRequests()

	for _, tc := range []struct {
		name    string
		subject string
		dns     []string
		usages  []certificatesv1.KeyUsage
		reason  string
		message string
	}{
		{
			name: "another hypervisor's name", subject: "system:vessel-agent:" + b, dns: []string{b},
			usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
			reason: "WrongSubject", message: fmt.Sprintf("the agent of hypervisor %s may only ask for subject CN=system:vessel-agent:%s", a, a),
		},
		{
			name: "its own name and another's", subject: "system:vessel-agent:" + a, dns: []string{a, b},
			usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
			reason: "WrongNames", message: fmt.Sprintf("the agent of hypervisor %s may only ask for the DNS name %s (and IP addresses), not DNS:%s, DNS:%s", a, a, a, b),
		},
		{
			name: "a client certificate", subject: "system:vessel-agent:" + a, dns: []string{a},
			usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth},
			reason: "WrongUsages", message: `not "client auth"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr := &certificatesv1.CertificateSigningRequest{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-agentcert-"},
				Spec: certificatesv1.CertificateSigningRequestSpec{
					Request:    request(t, tc.subject, tc.dns),
					SignerName: signer,
					Usages:     tc.usages,
				},
			}
			created, err := csrs.Create(t.Context(), csr, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("the agent of %s creates a CSR: %v", a, err)
			}
			t.Cleanup(func() {
				_ = coreClient(t, e, launcher.AdminKubeconfig).CertificatesV1().CertificateSigningRequests().Delete(context.Background(), created.Name, metav1.DeleteOptions{})
			})
			var got *certificatesv1.CertificateSigningRequest
			err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				got, err = csrs.Get(ctx, created.Name, metav1.GetOptions{})
				return err == nil && len(got.Status.Conditions) > 0, nil
			})
			if err != nil {
				t.Fatalf("CSR %s not decided: %v", created.Name, err)
			}
			c := got.Status.Conditions[0]
			if c.Type != certificatesv1.CertificateDenied || c.Reason != tc.reason || !strings.Contains(c.Message, tc.message) {
				t.Errorf("CSR %s: %s %s %q; want Denied %s %q", created.Name, c.Type, c.Reason, c.Message, tc.reason, tc.message)
			}
			if len(got.Status.Certificate) > 0 {
				t.Error("a denied CSR got a certificate")
			}
			// What an operator reads.
			stdout, _, _ := kubectl(t, e, "admin", "describe", "csr", created.Name)
			if !strings.Contains(stdout, "Denied") {
				t.Errorf("kubectl describe csr does not say Denied:\n%s", stdout)
			}
		})
	}
}

// servingCert is the certificate the agent of hv serves with.
func servingCert(t *testing.T, hv launcher.Hypervisor) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(servingcert.CurrentFile(launcher.ServingCertDir(hv)))
	if err != nil {
		t.Fatalf("the agent's serving certificate: %v", err)
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			t.Fatal("no certificate in the agent's serving certificate file")
		}
		if block.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			return cert
		}
	}
}

func pemOf(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

func approved(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved {
			return true
		}
	}
	return false
}

func request(t *testing.T, cn string, dns []string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// coreClient is a client of kube-apiserver with the kubeconfig of the
// named identity (a user, or a component such as an agent).
func coreClient(t *testing.T, e *framework.Env, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", e.Cluster.Kubeconfig(kubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// console attaches to the VM's console as user, through kube-apiserver,
// with client-go's WebSocket executor (what kubectl vm console uses).
func console(t *testing.T, e *framework.Env, user, namespace, name string) (io.WriteCloser, *lockedBuffer, chan error) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", e.Cluster.Kubeconfig(user))
	if err != nil {
		t.Fatal(err)
	}
	url := e.Admin.VesselV1alpha1().RESTClient().Post().Namespace(namespace).Resource("virtualmachines").Name(name).SubResource("console").URL()
	exec, err := remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, url.String())
	if err != nil {
		t.Fatal(err)
	}
	r, w := io.Pipe()
	out := &lockedBuffer{}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); w.Close() })
	go func() {
		done <- exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: r, Stdout: out, Tty: true})
	}()
	return w, out, done
}

func kubectl(t *testing.T, e *framework.Env, user string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "kubectl", args...)
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+e.Cluster.Kubeconfig(user),
		"KUBECACHEDIR="+t.TempDir(),
		"PATH="+e.BinDir+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitFor(out *lockedBuffer, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%q not seen in %v", want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000)
}
