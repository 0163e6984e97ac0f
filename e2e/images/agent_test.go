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
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher/rootfs"
)

// agentBundle unpacks the agent's image for one test.
func agentBundle(t *testing.T, e *env) *rootfs.Bundle {
	t.Helper()
	b, err := rootfs.Unpack(t.Context(), filepath.Join(e.imagesDir, "vessel-agent"), e.version, filepath.Join(t.TempDir(), "bundle"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runInImage runs a program of the image (not its entrypoint) chrooted
// into it, with work mounted at /work, and returns its combined output.
func runInImage(t *testing.T, b *rootfs.Bundle, work string, argv ...string) string {
	t.Helper()
	img := *b
	img.Process.Args = argv
	cmd, err := img.Command(t.Context(), rootfs.Options{Mounts: []rootfs.Mount{{Source: work, Target: "/work"}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in the agent's image: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func TestAgentImage(t *testing.T) {
	e := requireEnv(t)
	b := agentBundle(t, e)
	if uid, _ := b.Owner(); uid != 0 {
		t.Errorf("the agent's image runs as %d; it must be root to use the host's libvirtd socket", uid)
	}

	// What the agent executes itself (node-agent/disks, node-agent/hypervisor).
	t.Run("qemu-img makes and reads a qcow2 disk", func(t *testing.T) {
		work := t.TempDir()
		runInImage(t, b, work, "qemu-img", "create", "-q", "-f", "qcow2", "/work/disk.qcow2", "64M")
		out := runInImage(t, b, work, "prlimit", "--cpu=10", "--as=1073741824", "--", "qemu-img", "info", "-f", "qcow2", "--output=json", "/work/disk.qcow2")
		var info struct {
			Format      string `json:"format"`
			VirtualSize int64  `json:"virtual-size"`
		}
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("qemu-img info: %v\n%s", err, out)
		}
		if info.Format != "qcow2" || info.VirtualSize != 64<<20 {
			t.Errorf("qemu-img info = %+v, want a 64 MiB qcow2", info)
		}
	})

	t.Run("genisoimage makes a NoCloud seed ISO labelled cidata", func(t *testing.T) {
		work := t.TempDir()
		writeFiles(t, work, map[string][]byte{"user-data": []byte("#cloud-config\n"), "meta-data": []byte("instance-id: i-1\n")})
		runInImage(t, b, work, "genisoimage", "-quiet", "-output", "/work/seed.iso", "-volid", "cidata", "-joliet", "-rock", "/work/user-data", "/work/meta-data")
		iso, err := os.ReadFile(filepath.Join(work, "seed.iso"))
		if err != nil {
			t.Fatal(err)
		}
		// The primary volume descriptor is at 32 KiB; its volume
		// identifier at byte 40, 32 bytes padded with spaces.
		if len(iso) < 0x8000+72 || strings.TrimRight(string(iso[0x8000+40:0x8000+72]), " ") != "cidata" {
			t.Errorf("seed.iso has no volume cidata")
		}
	})

	t.Run("the KVM probe's QEMU runs", func(t *testing.T) {
		out := runInImage(t, b, t.TempDir(), "qemu-system-x86_64", "--version")
		if !strings.Contains(out, "QEMU emulator version") {
			t.Errorf("qemu-system-x86_64 --version:\n%s", out)
		}
	})

	t.Run("the DaemonSet's agent registers its Hypervisor through the image's apiserver", func(t *testing.T) {
		s := startedAPIServer(t, e)
		e.routeAPIServiceTo(t, s.port)
		e.runDaemonSetAgent(t, b)
	})
}

// runDaemonSetAgent runs the agent's entrypoint with install.yaml's
// DaemonSet: its arguments for a node named uniquely (orphan collection
// only touches domains stamped with the agent's own name, so the host's
// other guests are safe) with host IP 127.0.0.1, the host's libvirtd
// socket, a temporary directory for /var/lib/vessel, the stream Secret
// hack/cluster-certs.sh made, and credentials for system:vessel-agent:NODE.
// It waits until the Hypervisor is Ready, then stops the agent.
func (e *env) runDaemonSetAgent(t *testing.T, b *rootfs.Bundle) {
	t.Helper()
	spec := e.podSpec(t, "DaemonSet", "vessel-agent")
	c := container(t, spec)
	if c.Image != e.imageRef(t, "vessel-agent") {
		t.Fatalf("the DaemonSet runs %s, not the image just built (%s)", c.Image, e.imageRef(t, "vessel-agent"))
	}
	node := "e2e-image-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	args := containerArgs(t, c, map[string]string{"spec.nodeName": node, "status.hostIP": "127.0.0.1"})
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	// The stream server's port is the host's (hostNetwork): take a free
	// one rather than 10260, which an agent of this machine may hold.
	endpoint := flagValue(args, "--daemon-endpoint")
	if !strings.HasPrefix(endpoint, "127.0.0.1:") {
		t.Fatalf("--daemon-endpoint=%q does not start with the host IP", endpoint)
	}
	args = setFlag(args, "--daemon-endpoint", fmt.Sprintf("127.0.0.1:%d", port))

	dir := t.TempDir()
	ck, err := e.cluster.PKI.EnsureClientCert("agent-"+node, "system:vessel-agent:"+node, []string{"system:vessel-agents"})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := e.cluster.WriteKubeconfig(kubeconfig, node, ck); err != nil {
		t.Fatal(err)
	}
	credentials, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := e.adminClient(t).CoreV1().Secrets(namespace).Get(t.Context(), "vessel-agent-stream", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the Secret hack/cluster-certs.sh makes: %v", err)
	}
	state := filepath.Join(dir, "var-lib-vessel")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	volumes := podVolumes{
		secrets: map[string]map[string][]byte{
			"vessel-agent-credentials": {"kubeconfig": credentials},
			"vessel-agent-stream":      stream.Data,
		},
		hostPaths: map[string]string{"/run/libvirt": "/run/libvirt", "/var/lib/vessel": state},
	}
	cmd, err := b.Command(context.Background(), rootfs.Options{Args: args, Mounts: volumes.mounts(t, spec, c, dir)})
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "vessel-agent.log")
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	admin := e.vesselClient(t)
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		_ = admin.VesselV1alpha1().Hypervisors().Delete(context.Background(), node, metav1.DeleteOptions{})
	})

	var last *v1alpha1.Hypervisor
	err = wait.PollUntilContextTimeout(t.Context(), time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-exited:
			return false, fmt.Errorf("the agent exited: %s", cmd.ProcessState)
		default:
		}
		hv, err := admin.VesselV1alpha1().Hypervisors().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = hv
		for _, cond := range hv.Status.Conditions {
			if cond.Type == "Ready" && cond.Status == metav1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("Hypervisor %s not Ready: %v; last: %+v; agent log:\n%s", node, err, last, tailFile(logFile, 30))
	}
	if got, want := last.Status.DaemonEndpoint, fmt.Sprintf("127.0.0.1:%d", port); got != want {
		t.Errorf("daemonEndpoint = %q, want %q", got, want)
	}
	out := e.mustKubectl(t, "get", "hv", node)
	if !strings.Contains(out, node) {
		t.Errorf("kubectl get hv %s:\n%s", node, out)
	}
}

func (e *env) vesselClient(t *testing.T) versioned.Interface {
	t.Helper()
	cfg, err := e.cluster.AdminConfig()
	if err != nil {
		t.Fatal(err)
	}
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}
