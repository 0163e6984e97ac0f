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

package network

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/launcher"
)

// alice runs a command in her guest with `kubectl vm ssh`: the system ssh,
// through the port-forward tunnel, with the key her #cloud-config gave the
// guest. She gets its output and its exit code; bob (view in team-b) gets
// no tunnel to it.
func TestSSH(t *testing.T) {
	e := requireEnv(t)
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatalf("ssh: %v (hack/install-libvirt.sh installs openssh-client)", err)
	}
	key := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}

	vm := framework.GuestVM("team-a", "sshd")
	vm.Spec.NodeSelector = map[string]string{launcher.HypervisorLabel: e.Hypervisors[0].Name}
	// The key's list item at the key's own indentation, as many write it.
	vm.Spec.Disks = append(vm.Spec.Disks, v1alpha1.Disk{Name: "seed", CloudInit: &v1alpha1.CloudInitSource{
		UserData: "#cloud-config\nssh_authorized_keys:\n- " + strings.TrimSpace(string(pub)) + "\n",
	}})
	if _, err := e.Admin.VesselV1alpha1().VirtualMachines("team-a").Create(context.Background(), vm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.Admin.VesselV1alpha1().VirtualMachines("team-a").Delete(context.Background(), vm.Name, metav1.DeleteOptions{})
	})
	got := e.WaitVM(t, "team-a", vm.Name, 3*time.Minute, "a DHCP address", func(vm *v1alpha1.VirtualMachine) bool {
		return vm.Status.Phase == v1alpha1.VirtualMachineRunning && len(vm.Status.Interfaces) > 0 && vm.Status.Interfaces[0].IPAddress != ""
	})
	e.WaitLog(t, got, "VESSEL-CLOUDINIT cloud-config keys=1")

	ssh := func(user string, remote ...string) (string, int) {
		args := append([]string{"vm", "-n", "team-a", "ssh", "root@" + vm.Name, "-i", key,
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "--"}, remote...)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "kubectl", args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+e.Cluster.Kubeconfig(user), "PATH="+e.BinDir+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &exit):
			return string(out), exit.ExitCode()
		}
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		return "", 0
	}
	// The guest may still be starting dropbear when cloud-init is done.
	var out string
	var code int
	for deadline := time.Now().Add(time.Minute); ; {
		out, code = ssh("alice", "hostname; echo status-$((6*7)); exit 7")
		if code == 7 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if code != 7 || !strings.Contains(out, "sshd\n") || !strings.Contains(out, "status-42") {
		t.Fatalf("alice's kubectl vm ssh: exit %d, want 7 with the guest's host name and status-42:\n%s", code, out)
	}
	t.Logf("alice's kubectl vm ssh: exit %d\n%s", code, out)

	out, code = ssh("bob", "true")
	if code == 0 || !strings.Contains(out, "forbidden") && !strings.Contains(out, "not allowed") {
		t.Errorf("bob's kubectl vm ssh into team-a: exit %d, want a refusal:\n%s", code, out)
	}
	t.Logf("bob's kubectl vm ssh: exit %d\n%s", code, out)
}
