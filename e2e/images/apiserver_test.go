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

package images

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/vessel-vm/vessel/launcher"
	"github.com/vessel-vm/vessel/launcher/rootfs"
)

const (
	namespace = "vessel-system"
	// serviceHost is the name kube-apiserver's aggregator verifies the
	// vessel-apiserver's certificate for.
	serviceHost = "vessel-apiserver." + namespace + ".svc"
)

// imageAPIServer is the vessel-apiserver run from its image with
// install.yaml's Deployment, on the suite's control plane.
type imageAPIServer struct {
	bundle    *rootfs.Bundle
	cmd       *exec.Cmd
	exited    chan struct{}
	port      int
	servingCA []byte // what hack/cluster-certs.sh put in the APIService caBundle
	certDir   string
	dir       string
	logFile   string
}

// startedAPIServer returns the vessel-apiserver running from its image,
// starting it on first use: the certificates and Secrets as the install
// guide makes them (hack/cluster-certs.sh), the Deployment's flags and
// volumes, its ServiceAccount's token, the local etcd instead of the
// etcd StatefulSet, and a free loopback port instead of the pod's own
// network namespace.
func startedAPIServer(t *testing.T, e *env) *imageAPIServer {
	t.Helper()
	if apiserver != nil {
		return apiserver
	}
	s := &imageAPIServer{exited: make(chan struct{})}
	var err error
	if s.dir, err = os.MkdirTemp("", "vessel-e2e-images-apiserver-"); err != nil {
		t.Fatal(err)
	}
	s.certDir = filepath.Join(s.dir, "certs")
	s.logFile = filepath.Join(s.dir, "vessel-apiserver.log")

	// The install guide's certificate step, against this control plane.
	kubeconfig := e.cluster.Kubeconfig("admin")
	if out, err := e.script(t.Context(), []string{"KUBECONFIG=" + kubeconfig, "KUBECACHEDIR=" + e.kubeDir},
		"hack/cluster-certs.sh", "--dir", s.certDir); err != nil {
		t.Fatalf("hack/cluster-certs.sh: %v\n%s", err, out)
	}
	if s.servingCA, err = os.ReadFile(filepath.Join(s.certDir, "serving-ca.crt")); err != nil {
		t.Fatal(err)
	}

	client := e.adminClient(t)
	ctx := t.Context()
	secrets := map[string]map[string][]byte{}
	for _, name := range []string{"vessel-apiserver-tls", "vessel-apiserver-agent-client", "vessel-agent-signer"} {
		sec, err := client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the Secret hack/cluster-certs.sh makes: %v", err)
		}
		secrets[name] = sec.Data
	}
	spec := e.podSpec(t, "Deployment", "vessel-apiserver")
	expiry := int64(3600)
	token, err := client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, spec.ServiceAccountName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of ServiceAccount %s: %v", spec.ServiceAccountName, err)
	}
	caCert, err := os.ReadFile(e.cluster.PKI.ClusterCA.CertFile)
	if err != nil {
		t.Fatal(err)
	}

	c := container(t, spec)
	if len(c.Command) > 0 {
		t.Fatalf("the Deployment overrides the image's entrypoint with %v", c.Command)
	}
	if c.Image != e.imageRef(t, "vessel-apiserver") {
		t.Fatalf("the Deployment runs %s, not the image just built (%s)", c.Image, e.imageRef(t, "vessel-apiserver"))
	}
	s.bundle, err = rootfs.Unpack(ctx, filepath.Join(e.imagesDir, "vessel-apiserver"), e.version, filepath.Join(s.dir, "bundle"))
	if err != nil {
		t.Fatal(err)
	}
	if c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil && *c.SecurityContext.RunAsNonRoot {
		if uid, _ := s.bundle.Owner(); uid == 0 {
			t.Fatal("the Deployment says runAsNonRoot but the image's user is root: the kubelet would refuse to start it")
		}
	}
	if s.port, err = launcher.FreeLoopbackPort(); err != nil {
		t.Fatal(err)
	}
	args := containerArgs(t, c, nil)
	args = setFlag(args, "--secure-port", strconv.Itoa(s.port))
	args = setFlag(args, "--bind-address", "127.0.0.1")
	// The local etcd speaks plain HTTP on loopback; the StatefulSet's
	// client TLS flags, if any, do not apply to it.
	args = setFlag(args, "--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", e.cluster.Ports.EtcdClient))
	for _, f := range []string{"--etcd-cafile", "--etcd-certfile", "--etcd-keyfile"} {
		args = dropFlag(args, f)
	}
	// The etcd client certificate's volume stays empty with those flags.
	secrets["vessel-etcd-client"] = map[string][]byte{}
	volumes := podVolumes{secrets: secrets, token: []byte(token.Status.Token), caCert: caCert, namespace: namespace}
	opts := rootfs.Options{
		Args:   args,
		Mounts: volumes.mounts(t, spec, c, s.dir),
		// In-cluster configuration, pointing at the local kube-apiserver.
		Env:            []string{fmtEnv("KUBERNETES_SERVICE_HOST", "127.0.0.1"), fmtEnv("KUBERNETES_SERVICE_PORT", e.cluster.Ports.KubeAPIServer)},
		ReadOnlyRootfs: c.SecurityContext != nil && c.SecurityContext.ReadOnlyRootFilesystem != nil && *c.SecurityContext.ReadOnlyRootFilesystem,
	}
	if s.cmd, err = s.bundle.Command(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(s.logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	apiserver = s
	t.Logf("vessel-apiserver from %s, pid %d, port %d, log %s", s.bundle, s.cmd.Process.Pid, s.port, s.logFile)
	s.waitReady(t)
	return s
}

// waitReady polls /readyz over TLS verified as kube-apiserver's aggregator
// verifies it: the caBundle, for the Service's name.
func (s *imageAPIServer) waitReady(t *testing.T) {
	t.Helper()
	client := s.httpClient(t)
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-s.exited:
			return false, fmt.Errorf("exited: %s", s.cmd.ProcessState)
		default:
		}
		resp, err := client.Get(s.url("/readyz"))
		if err != nil {
			last = err.Error()
			return false, nil
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		return resp.StatusCode == http.StatusOK && string(body) == "ok", nil
	})
	if err != nil {
		t.Fatalf("/readyz of the vessel-apiserver from its image: %v (last: %s); log:\n%s", err, last, tailFile(s.logFile, 30))
	}
}

func (s *imageAPIServer) url(path string) string {
	return fmt.Sprintf("https://127.0.0.1:%d%s", s.port, path)
}

func (s *imageAPIServer) httpClient(t *testing.T) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.servingCA) {
		t.Fatal("no certificate in the serving CA")
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serviceHost}},
	}
}

func (s *imageAPIServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.exited
		}
	}
	os.RemoveAll(s.dir)
}

func TestAPIServerImage(t *testing.T) {
	e := requireEnv(t)
	s := startedAPIServer(t, e)

	t.Run("runs as the image's nonroot user, chrooted into the image, with a read-only root", func(t *testing.T) {
		pid := s.cmd.Process.Pid
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(status, []byte("\nUid:\t65532\t65532\t65532\t65532\n")) {
			t.Errorf("the process does not run as 65532:\n%s", status)
		}
		root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
		if err != nil || root != s.bundle.Rootfs {
			t.Errorf("the process's root is %q (%v), want %s", root, err, s.bundle.Rootfs)
		}
		mountinfo, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
		if err != nil {
			t.Fatal(err)
		}
		if !rootIsReadOnly(string(mountinfo)) {
			t.Errorf("its root filesystem is writable:\n%s", mountinfo)
		}
	})

	t.Run("becomes the APIService's backend: kubectl get apiservice and hv", func(t *testing.T) {
		e.routeAPIServiceTo(t, s.port)
		err := wait.PollUntilContextTimeout(t.Context(), time.Second, 2*time.Minute, true, func(context.Context) (bool, error) {
			out, _ := e.kubectl(t, "get", "apiservice", "v1alpha1.vessel.dev", "-o", `jsonpath={.status.conditions[?(@.type=="Available")].status}`)
			return out == "True", nil
		})
		if err != nil {
			out, _ := e.kubectl(t, "get", "apiservice", "v1alpha1.vessel.dev", "-o", "yaml")
			t.Fatalf("APIService v1alpha1.vessel.dev not Available behind the image's apiserver:\n%s\nlog:\n%s", out, tailFile(s.logFile, 20))
		}
		out := e.mustKubectl(t, "get", "apiservice", "v1alpha1.vessel.dev")
		if !strings.Contains(out, "vessel-system/vessel-apiserver") || !strings.Contains(out, "True") {
			t.Errorf("kubectl get apiservice:\n%s", out)
		}
		e.mustKubectl(t, "get", "hv")
	})

	t.Run("stores objects in the etcd named by --etcd-servers", func(t *testing.T) {
		name := "from-image-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
		vm := `{"apiVersion":"vessel.dev/v1alpha1","kind":"VirtualMachine","metadata":{"name":"` + name + `","namespace":"team-a"},` +
			`"spec":{"runStrategy":"Halted","cpus":1,"memory":"96Mi","kernel":{"kernel":{"hostPath":{"path":"/var/lib/vessel/images/k"}}}}}`
		cmd := exec.CommandContext(t.Context(), "kubectl", "create", "-f", "-", "--kubeconfig", e.cluster.Kubeconfig("admin"))
		cmd.Env = append(os.Environ(), "KUBECACHEDIR="+e.kubeDir)
		cmd.Stdin = strings.NewReader(vm)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl create vm: %v\n%s", err, out)
		}
		t.Cleanup(func() { _, _ = e.kubectl(t, "delete", "vm", "-n", "team-a", name, "--wait=false") })
		// Vessel's prefix, then the storage factory's group/resource.
		key := "/registry/vessel.dev/vessel.dev/virtualmachines/team-a/" + name
		if keys := e.etcdKeys(t, key); !slices.Equal(keys, []string{key}) {
			t.Errorf("etcd at the local endpoint holds %v under %s, want the VM", keys, key)
		}
	})
}

// rootIsReadOnly reports whether the mount at / in a mountinfo is
// read-only.
func rootIsReadOnly(mountinfo string) bool {
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			return strings.HasPrefix(f[5], "ro")
		}
	}
	return false
}

// routeAPIServiceTo points the local Service's EndpointSlice at port, as
// a Deployment's pods would be its endpoints.
func (e *env) routeAPIServiceTo(t *testing.T, port int) {
	t.Helper()
	patch := fmt.Sprintf(`{"ports":[{"name":"https","port":%d,"protocol":"TCP"}]}`, port)
	e.mustKubectl(t, "patch", "endpointslice", "-n", namespace, "vessel-apiserver-local", "--type=merge", "-p", patch)
}

// etcdKeys lists the keys with this prefix through etcd's JSON gateway.
func (e *env) etcdKeys(t *testing.T, prefix string) []string {
	t.Helper()
	end := []byte(prefix)
	end[len(end)-1]++
	body, _ := json.Marshal(map[string]any{
		"key": base64.StdEncoding.EncodeToString([]byte(prefix)), "range_end": base64.StdEncoding.EncodeToString(end),
		"keys_only": true,
	})
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v3/kv/range", e.cluster.Ports.EtcdClient), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		KVs []struct {
			Key []byte `json:"key"`
		} `json:"kvs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range out.KVs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

func (e *env) adminClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	cfg, err := e.cluster.AdminConfig()
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func tailFile(path string, lines int) string {
	data, _ := os.ReadFile(path)
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
