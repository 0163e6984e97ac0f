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
	"os/exec"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/launcher"
)

// TestOperatorBridge: alice's VMs on host bridges. The cluster refuses a
// bridge it does not list, the agent one it does not allow on its host,
// and on the bridge it allows the guest sends from its own MAC and first
// address only.
func TestOperatorBridge(t *testing.T) {
	e := requireEnv(t)
	hv := e.Hypervisors[0]
	suffix := utilrand.String(4)
	// The operator's bridge, with an address of the hypervisor's on it.
	inNetns := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"netns", "exec", hv.Netns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v in %s: %v: %s", args, hv.Netns, err, out)
		}
	}
	inNetns("ip", "link", "add", lanBridge, "type", "bridge")
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "exec", hv.Netns, "ip", "link", "delete", lanBridge).Run() })
	inNetns("ip", "addr", "add", "192.168.77.1/24", "dev", lanBridge)
	inNetns("ip", "link", "set", lanBridge, "up")

	onBridge := func(name, bridge string) (string, error) {
		vm := framework.GuestVM("team-a", name+"-"+suffix)
		vm.Spec.NodeSelector = map[string]string{launcher.HypervisorLabel: hv.Name}
		vm.Spec.Interfaces = []v1alpha1.Interface{{Name: "lan", Type: v1alpha1.InterfaceTypeBridge, Bridge: bridge}}
		vm.APIVersion, vm.Kind = v1alpha1.SchemeGroupVersion.String(), "VirtualMachine"
		manifest, err := yaml.Marshal(vm)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = e.Kubectl(t, "admin", "-n", "team-a", "delete", "vm", vm.Name, "--ignore-not-found", "--wait=false")
		})
		return e.kubectlStdin(t, "alice", string(manifest), "apply", "-f", "-")
	}

	t.Run("the cluster refuses a bridge it does not list", func(t *testing.T) {
		out, err := onBridge("docker", "docker0")
		if err == nil {
			t.Fatalf("alice put a VM on docker0:\n%s", out)
		}
		if want := `spec.interfaces[0].bridge: Unsupported value: "docker0": supported values: "vessel-lan", "vessel-other"`; !strings.Contains(out, want) {
			t.Errorf("the refusal lacks %q:\n%s", want, out)
		}
	})

	t.Run("the agent refuses a bridge it does not allow", func(t *testing.T) {
		if out, err := onBridge("other", otherBridge); err != nil {
			t.Fatalf("alice's kubectl apply: %v\n%s", err, out)
		}
		vm := e.WaitVM(t, "team-a", "other-"+suffix, 3*time.Minute, "Failed with BridgeNotAllowed", func(vm *v1alpha1.VirtualMachine) bool {
			for _, c := range vm.Status.Conditions {
				if c.Type == v1alpha1.VirtualMachineConditionProvisioned && c.Reason == "BridgeNotAllowed" {
					return vm.Status.Phase == v1alpha1.VirtualMachineFailed
				}
			}
			return false
		})
		out := e.MustKubectl(t, "alice", "-n", "team-a", "describe", "vm", vm.Name)
		if want := `interface lan: not allowed on this hypervisor: bridge "vessel-other": its agent allows vessel-lan (vessel-agent --allowed-bridges)`; !strings.Contains(out, want) {
			t.Errorf("kubectl describe vm lacks %q:\n%s", want, out)
		}
		if hvs := e.DomainsOf(t, vm); len(hvs) > 0 {
			t.Errorf("a domain was defined on %v", hvs)
		}
	})

	t.Run("on the allowed bridge the guest keeps its MAC and address", func(t *testing.T) {
		if out, err := onBridge("lan", lanBridge); err != nil {
			t.Fatalf("alice's kubectl apply: %v\n%s", err, out)
		}
		vm := e.WaitPhase(t, "team-a", "lan-"+suffix, v1alpha1.VirtualMachineRunning)
		e.WaitLog(t, vm, "VESSEL-BOOT done")
		sh := e.shell(t, vm)
		ping := func() bool {
			_, rc := sh.run(t, "ping -c 2 -W 2 192.168.77.1 >/dev/null 2>&1", time.Minute)
			return rc == 0
		}
		sh.run(t, "ip addr flush dev eth0; ip addr add 192.168.77.2/24 dev eth0 && ip link set eth0 up", 10*time.Second)
		if !ping() {
			t.Fatal("the guest does not reach the bridge's address from its own MAC")
		}
		// Its first address is learned: another is not its to use.
		inNetns("ip", "neigh", "flush", "dev", lanBridge)
		sh.run(t, "ip addr flush dev eth0; ip addr add 192.168.77.3/24 dev eth0", 10*time.Second)
		if ping() {
			t.Error("the guest reaches the bridge from a second address")
		}
		sh.run(t, "ip addr flush dev eth0; ip addr add 192.168.77.2/24 dev eth0", 10*time.Second)
		inNetns("ip", "neigh", "flush", "dev", lanBridge)
		sh.run(t, "ip link set eth0 down && ip link set eth0 address 52:54:00:de:ad:02 && ip link set eth0 up", 10*time.Second)
		if ping() {
			t.Error("the guest reaches the bridge with another MAC")
		}
		if !strings.Contains(ruleset(t, hv), strings.ToLower(vm.Status.Interfaces[0].MACAddress)) {
			t.Errorf("the hypervisor's ruleset does not name the guest's MAC")
		}
		vms := e.Admin.VesselV1alpha1().VirtualMachines("team-a")
		if err := vms.Delete(context.Background(), vm.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := vms.Get(ctx, vm.Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Fatalf("VM %s not gone: %v", vm.Name, err)
		}
		if rs := ruleset(t, hv); strings.Contains(rs, strings.ToLower(vm.Status.Interfaces[0].MACAddress)) {
			t.Errorf("the deleted VM's MAC is still in the ruleset:\n%s", rs)
		}
	})
}
