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

package apiserver_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apiserver"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher/pki"
	"github.com/vessel-vm/vessel/node-agent/console"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// shellGuest echoes input and answers "ping" with "pong".
type shellGuest struct{}

func (shellGuest) Open(_ context.Context, _ string, in io.Reader, out io.Writer) (<-chan error, error) {
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := in.Read(buf)
			_, _ = out.Write(buf[:n])
			if strings.Contains(string(buf[:n]), "ping") {
				_, _ = out.Write([]byte("\r\npong\r\n"))
			}
			if err != nil {
				done <- nil
				return
			}
		}
	}()
	return done, nil
}

// anyDomain says every UID is a running domain of default/demo.
type anyDomain struct{}

func (anyDomain) Lookup(_ context.Context, uid string) (*hypervisor.Domain, error) {
	return &hypervisor.Domain{UUID: uid, State: hypervisor.StateRunning, Owner: hypervisor.Owner{Namespace: "default", Name: "demo", UID: uid}}, nil
}

// startAgentStreamServer runs a node agent's stream server with the
// launcher's PKI and returns its address.
func startAgentStreamServer(t *testing.T, serving pki.CertKey, certs *pki.PKI) string {
	t.Helper()
	srv, err := console.NewServer(console.Config{Backend: shellGuest{}, Domains: anyDomain{}, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig, err := console.TLSConfig(serving.CertFile, serving.KeyFile, certs.AgentCA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ctx, ln, tlsConfig) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ln.Addr().String()
}

// vmOn creates default/demo bound to a Hypervisor publishing endpoint, with
// the given phase.
func vmOn(t *testing.T, client versioned.Interface, endpoint string, phase v1alpha1.VirtualMachinePhase) {
	t.Helper()
	ctx := t.Context()
	hvs := client.VesselV1alpha1().Hypervisors()
	hv, err := hvs.Create(ctx, &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: "hv1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hv.Status.DaemonEndpoint = endpoint
	setReady(hv, metav1.ConditionTrue, time.Now())
	if _, err := hvs.UpdateStatus(ctx, hv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	vms := client.VesselV1alpha1().VirtualMachines("default")
	vm := &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default"},
		Spec: v1alpha1.VirtualMachineSpec{
			RunStrategy: v1alpha1.RunStrategyAlways, CPUs: 1, Memory: resource.MustParse("96Mi"),
			Disks: []v1alpha1.Disk{{Name: "root", Blank: &v1alpha1.BlankSource{Size: resource.MustParse("1Gi")}}},
		},
	}
	if _, err := vms.Create(ctx, vm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := vms.Bind(ctx, "demo", &v1alpha1.VirtualMachineBinding{ObjectMeta: metav1.ObjectMeta{Name: "demo"}, Target: "hv1"}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setPhase(t, client, phase)
}

// setReady gives hv a Ready condition and a last heartbeat at lastHeartbeat.
func setReady(hv *v1alpha1.Hypervisor, status metav1.ConditionStatus, lastHeartbeat time.Time) {
	at := metav1.NewTime(lastHeartbeat)
	hv.Status.LastHeartbeatTime = &at
	meta.SetStatusCondition(&hv.Status.Conditions, metav1.Condition{
		Type: v1alpha1.HypervisorConditionReady, Status: status, Reason: "Test", Message: "set by the test", LastTransitionTime: at,
	})
}

func setPhase(t *testing.T, client versioned.Interface, phase v1alpha1.VirtualMachinePhase) {
	t.Helper()
	vms := client.VesselV1alpha1().VirtualMachines("default")
	vm, err := vms.Get(t.Context(), "demo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vm.Status.Phase = phase
	if _, err := vms.UpdateStatus(t.Context(), vm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// attach opens the console subresource with client-go's WebSocket
// executor and returns its stdin, its output and its end.
func attach(t *testing.T, s *apiservertesting.TestServer, query map[string]string) (io.WriteCloser, *lockedBuffer, chan error) {
	t.Helper()
	req := s.Client.VesselV1alpha1().RESTClient().Post().Namespace("default").Resource("virtualmachines").Name("demo").SubResource("console")
	for k, v := range query {
		req = req.Param(k, v)
	}
	exec, err := remotecommand.NewWebSocketExecutor(s.ClientConfig, http.MethodGet, req.URL().String())
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

// refusal is the API status a console attempt was refused with.
func refusal(t *testing.T, done chan error) *apierrors.StatusError {
	t.Helper()
	select {
	case err := <-done:
		var upgrade *httpstream.UpgradeFailureError
		var status *apierrors.StatusError
		if errors.As(err, &upgrade) && errors.As(upgrade.Cause, &status) {
			return status
		}
		t.Fatalf("console ended with %v, want a refusal with an API status", err)
	case <-time.After(30 * time.Second):
		t.Fatal("console was not refused")
	}
	return nil
}

func TestConsoleAndLogReachTheAgent(t *testing.T) {
	certs, err := pki.Ensure(t.TempDir(), pki.Options{Hypervisors: []string{"hv1", "hv2"}})
	if err != nil {
		t.Fatal(err)
	}
	agent := startAgentStreamServer(t, certs.AgentServers["hv1"], certs)
	s := apiservertesting.Start(t, apiservertesting.Options{
		DisableControllers: true,
		AgentClient:        apiserver.AgentClientOptions{CAFile: certs.AgentCA.CertFile, CertFile: certs.AgentClient.CertFile, KeyFile: certs.AgentClient.KeyFile},
	})
	vmOn(t, s.Client, agent, v1alpha1.VirtualMachineRunning)

	stdin, out, done := attach(t, s, nil)
	if _, err := stdin.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "pong") {
		if time.Now().After(deadline) {
			t.Fatalf("no pong through the console; output %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stdin.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("console ended with %v after stdin ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("console did not end after stdin ended")
	}

	log, err := s.Client.VesselV1alpha1().RESTClient().Get().Namespace("default").Resource("virtualmachines").
		Name("demo").SubResource("log").Param("tailBytes", "6").DoRaw(t.Context())
	if err != nil || string(log) != "pong\r\n" {
		t.Errorf("log = %q, %v; want the last 6 bytes of output", log, err)
	}

	t.Run("a negative tailBytes is invalid", func(t *testing.T) {
		_, _, done := attach(t, s, map[string]string{"tailBytes": "-1"})
		if st := refusal(t, done); st.Status().Code != http.StatusUnprocessableEntity || !strings.Contains(st.Error(), "tailBytes") {
			t.Errorf("refused with %v", st)
		}
	})

	t.Run("a stopped VM is a 409 saying so", func(t *testing.T) {
		setPhase(t, s.Client, v1alpha1.VirtualMachineStopped)
		defer setPhase(t, s.Client, v1alpha1.VirtualMachineRunning)
		_, _, done := attach(t, s, nil)
		st := refusal(t, done)
		if st.Status().Code != http.StatusConflict || st.Status().Message != "VM default/demo is not running (phase Stopped)" {
			t.Errorf("refused with %d %q", st.Status().Code, st.Status().Message)
		}
		// The log of a stopped VM is still there.
		if _, err := s.Client.VesselV1alpha1().RESTClient().Get().Namespace("default").Resource("virtualmachines").
			Name("demo").SubResource("log").DoRaw(t.Context()); err != nil {
			t.Errorf("log of a stopped VM: %v", err)
		}
	})

	// What a tenant reads when the agent is away: which hypervisor, how
	// long it has been silent, and never the agent's internal address.
	t.Run("a hypervisor that is not Ready is a 503 at once", func(t *testing.T) {
		hvs := s.Client.VesselV1alpha1().Hypervisors()
		hv, err := hvs.Get(t.Context(), "hv1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		setReady(hv, metav1.ConditionUnknown, time.Now().Add(-52*time.Second))
		if _, err := hvs.UpdateStatus(t.Context(), hv, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			hv, _ := hvs.Get(t.Context(), "hv1", metav1.GetOptions{})
			setReady(hv, metav1.ConditionTrue, time.Now())
			if _, err := hvs.UpdateStatus(t.Context(), hv, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}()
		want := "hypervisor hv1 is not ready: its agent has not reported for 5" // 52s, or 53s on a slow run
		start := time.Now()
		_, _, done := attach(t, s, nil)
		st := refusal(t, done)
		if st.Status().Code != http.StatusServiceUnavailable || !strings.HasPrefix(st.Status().Message, want) {
			t.Errorf("console refused with %d %q, want 503 %q...", st.Status().Code, st.Status().Message, want)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("the refusal took %v; it must not wait for the agent", took)
		}
		err = readLog(t, s)
		if !apierrors.IsServiceUnavailable(err) || !strings.HasPrefix(apiMessage(err), want) {
			t.Errorf("log answered %v, want 503 %q...", err, want)
		}
	})

	t.Run("an agent that does not answer is a 503 without its address", func(t *testing.T) {
		hvs := s.Client.VesselV1alpha1().Hypervisors()
		hv, err := hvs.Get(t.Context(), "hv1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dead, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		deadAddr := dead.Addr().String()
		dead.Close() // nothing listens there any more: connection refused
		hv.Status.DaemonEndpoint = deadAddr
		if _, err := hvs.UpdateStatus(t.Context(), hv, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			hv, _ := hvs.Get(t.Context(), "hv1", metav1.GetOptions{})
			hv.Status.DaemonEndpoint = agent
			if _, err := hvs.UpdateStatus(t.Context(), hv, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}()
		want := "cannot reach the agent of hypervisor hv1, which runs VM default/demo: connection refused"
		_, _, done := attach(t, s, nil)
		st := refusal(t, done)
		if st.Status().Code != http.StatusServiceUnavailable || !strings.HasPrefix(st.Status().Message, want) || strings.Contains(st.Status().Message, deadAddr) {
			t.Errorf("console refused with %d %q, want 503 %q... without %s", st.Status().Code, st.Status().Message, want, deadAddr)
		}
		err = readLog(t, s)
		if msg := apiMessage(err); !apierrors.IsServiceUnavailable(err) || !strings.HasPrefix(msg, want) || strings.Contains(msg, deadAddr) {
			t.Errorf("log answered %v, want 503 %q... without %s", err, want, deadAddr)
		}
	})

	// A node holding its own agent's key cannot pass for another node's
	// agent: hv1's status pointing at a server with hv2's certificate
	// (signed by the same agent CA) gets no console and no log.
	t.Run("an endpoint with another hypervisor's certificate is refused", func(t *testing.T) {
		impostor := startAgentStreamServer(t, certs.AgentServers["hv2"], certs)
		hvs := s.Client.VesselV1alpha1().Hypervisors()
		hv, err := hvs.Get(t.Context(), "hv1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hv.Status.DaemonEndpoint = impostor
		if _, err := hvs.UpdateStatus(t.Context(), hv, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			hv, _ := hvs.Get(t.Context(), "hv1", metav1.GetOptions{})
			hv.Status.DaemonEndpoint = agent
			if _, err := hvs.UpdateStatus(t.Context(), hv, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}()
		want := "cannot reach the agent of hypervisor hv1, which runs VM default/demo: the endpoint its Hypervisor status publishes presented a serving certificate that is not issued for hypervisor hv1 (x509: certificate is valid for hv2, not hv1)"
		_, out, done := attach(t, s, nil)
		st := refusal(t, done)
		if st.Status().Code != http.StatusServiceUnavailable || !strings.HasPrefix(st.Status().Message, want) || strings.Contains(st.Status().Message, impostor) {
			t.Errorf("console refused with %d %q, want 503 %q... without %s", st.Status().Code, st.Status().Message, want, impostor)
		}
		if out.String() != "" {
			t.Errorf("the impostor's output reached the user: %q", out.String())
		}
		err = readLog(t, s)
		if msg := apiMessage(err); !apierrors.IsServiceUnavailable(err) || !strings.HasPrefix(msg, want) {
			t.Errorf("log answered %v, want 503 %q...", err, want)
		}
	})

	t.Run("a hypervisor without an endpoint is a 503", func(t *testing.T) {
		hvs := s.Client.VesselV1alpha1().Hypervisors()
		hv, err := hvs.Get(t.Context(), "hv1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hv.Status.DaemonEndpoint = ""
		if _, err := hvs.UpdateStatus(t.Context(), hv, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, _, done := attach(t, s, nil)
		st := refusal(t, done)
		if st.Status().Code != http.StatusServiceUnavailable || !strings.Contains(st.Status().Message, "publishes no stream endpoint") {
			t.Errorf("refused with %d %q", st.Status().Code, st.Status().Message)
		}
	})
}

func TestConsoleIsDisabledWithoutAgentCertificates(t *testing.T) {
	s := apiservertesting.Start(t, apiservertesting.Options{DisableControllers: true})
	vmOn(t, s.Client, "127.0.0.1:1", v1alpha1.VirtualMachineRunning)
	_, _, done := attach(t, s, nil)
	st := refusal(t, done)
	if st.Status().Code != http.StatusServiceUnavailable || !strings.Contains(st.Status().Message, "--agent-client-cert-file") {
		t.Errorf("refused with %d %q", st.Status().Code, st.Status().Message)
	}
}

// readLog reads the log subresource the way `kubectl vm logs` does.
func readLog(t *testing.T, s *apiservertesting.TestServer) error {
	body, err := s.Client.VesselV1alpha1().RESTClient().Get().Namespace("default").Resource("virtualmachines").
		Name("demo").SubResource("log").Stream(t.Context())
	if err != nil {
		return err
	}
	return body.Close()
}

// apiMessage is the message of an API error, "" for anything else.
func apiMessage(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Message
	}
	return ""
}
