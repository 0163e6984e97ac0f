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
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/launcher"
)

// TestManagedNetwork: VMs of team-a on one hypervisor get DHCP addresses
// in status and reach each other; team-b's VM there reaches neither them
// nor the hypervisor; a guest that takes another IP or MAC is cut off
// until it gives it back; an agent restart and a libvirtd restart keep the
// guests talking and leave the same ruleset.
func TestManagedNetwork(t *testing.T) {
	e := requireEnv(t)
	hv := e.Hypervisors[0]
	suffix := utilrand.String(4)
	a1 := e.managedVM(t, "team-a", "a1-"+suffix, hv.Name)
	a2 := e.managedVM(t, "team-a", "a2-"+suffix, hv.Name)
	b1 := e.managedVM(t, "team-b", "b1-"+suffix, hv.Name)
	ipA1, ipA2, ipB1 := primaryIP(t, a1), primaryIP(t, a2), primaryIP(t, b1)
	t.Logf("team-a: %s %s, team-b: %s", ipA1, ipA2, ipB1)
	if ipA1.Is4() && netip.PrefixFrom(ipA1, 24).Masked() != netip.PrefixFrom(ipA2, 24).Masked() {
		t.Errorf("team-a's VMs are on different subnets: %s, %s", ipA1, ipA2)
	}
	if netip.PrefixFrom(ipA1, 24).Masked() == netip.PrefixFrom(ipB1, 24).Masked() {
		t.Errorf("team-a and team-b share a subnet: %s, %s", ipA1, ipB1)
	}

	t.Run("kubectl get shows the address", func(t *testing.T) {
		out := e.MustKubectl(t, "alice", "get", "vm", "-n", "team-a", a1.Name, "-o", "wide")
		if !strings.Contains(out, ipA1.String()) {
			t.Errorf("kubectl get vm -o wide lacks %s:\n%s", ipA1, out)
		}
	})

	sh1, sh2, shB := e.shell(t, a1), e.shell(t, a2), e.shell(t, b1)
	ping := func(t *testing.T, s *shell, to netip.Addr) bool {
		t.Helper()
		_, rc := s.run(t, "ping -c 2 -W 2 "+to.String()+" >/dev/null 2>&1", time.Minute)
		return rc == 0
	}
	gateway := netip.PrefixFrom(ipA1, 24).Masked().Addr().Next()

	t.Run("team-a reaches team-a", func(t *testing.T) {
		if !ping(t, sh1, ipA2) || !ping(t, sh2, ipA1) {
			t.Fatal("team-a's VMs cannot ping each other")
		}
	})
	t.Run("team-b reaches neither team-a nor the hypervisor", func(t *testing.T) {
		if ping(t, shB, ipA1) {
			t.Error("team-b's VM pings team-a's")
		}
		if ping(t, sh1, ipB1) {
			t.Error("team-a's VM pings team-b's")
		}
		if ping(t, sh1, gateway) {
			t.Errorf("team-a's VM pings the hypervisor at %s", gateway)
		}
		if _, rc := sh1.run(t, "echo | nc -w 2 "+gateway.String()+" 22", time.Minute); rc == 0 {
			t.Error("team-a's VM opened a TCP connection to the hypervisor")
		}
	})
	t.Run("a guest cannot use another address or MAC", func(t *testing.T) {
		spoof := ipA2.Next().Next().Next().Next().Next().Next().Next().Next().Next().Next()
		sh2.run(t, "ip addr flush dev eth0 && ip addr add "+spoof.String()+"/24 dev eth0", 10*time.Second)
		if ping(t, sh2, ipA1) {
			t.Errorf("a guest that took %s still reaches %s", spoof, ipA1)
		}
		sh2.run(t, "ip addr flush dev eth0 && ip addr add "+ipA2.String()+"/24 dev eth0", 10*time.Second)
		if !ping(t, sh2, ipA1) {
			t.Fatal("the guest is not reachable again with its own address")
		}
		mac, _ := sh2.run(t, "cat /sys/class/net/eth0/address", 10*time.Second)
		mac = strings.TrimSpace(mac[strings.LastIndex(mac, "\n")+1:])
		sh2.run(t, "ip link set eth0 down && ip link set eth0 address 52:54:00:de:ad:01 && ip link set eth0 up", 10*time.Second)
		if ping(t, sh2, ipA1) {
			t.Error("a guest with another MAC still reaches team-a")
		}
		sh2.run(t, "ip link set eth0 down && ip link set eth0 address "+want(a2)+" && ip link set eth0 up && ip addr replace "+ipA2.String()+"/24 dev eth0", 10*time.Second)
		if !ping(t, sh2, ipA1) {
			t.Fatal("the guest is not reachable again with its own MAC")
		}
	})
	t.Run("port-forward reaches the guest's httpd, for alice, not bob", func(t *testing.T) {
		e.testPortForward(t, sh1, a1, b1)
	})
	t.Run("an agent restart changes nothing", func(t *testing.T) {
		before := ruleset(t, hv)
		if err := e.Cluster.KillAgent(hv.Name); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := e.Cluster.RestartAgent(ctx, hv.Name); err != nil {
			t.Fatal(err)
		}
		// One resync later every VM was looked at again.
		time.Sleep(5 * time.Second)
		after := ruleset(t, hv)
		if after != before {
			t.Errorf("ruleset changed across the restart:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if n := strings.Count(after, "table inet vessel"); n != 1 {
			t.Errorf("%d inet vessel tables", n)
		}
		// The consoles went with the agent that served them.
		sh1, sh2 = e.shell(t, a1), e.shell(t, a2)
		if !ping(t, sh1, ipA2) || !ping(t, sh2, ipA1) {
			t.Error("team-a's VMs cannot ping each other after the restart")
		}
		if got := primaryIP(t, e.WaitPhase(t, "team-a", a1.Name, v1alpha1.VirtualMachineRunning)); got != ipA1 {
			t.Errorf("address changed across the restart: %s then %s", ipA1, got)
		}
	})
	t.Run("a libvirtd restart changes nothing", func(t *testing.T) {
		before := ruleset(t, hv)
		pids := map[string]int{a1.Name: framework.QEMUPID(t, string(a1.UID)), a2.Name: framework.QEMUPID(t, string(a2.UID))}
		e.RestartLibvirtd(t, hv.Name)
		// The agent reconnects and resyncs every VM.
		e.WaitVM(t, "team-a", a1.Name, time.Minute, "Ready again", func(vm *v1alpha1.VirtualMachine) bool {
			c := meta.FindStatusCondition(vm.Status.Conditions, v1alpha1.VirtualMachineConditionReady)
			return c != nil && c.Status == metav1.ConditionTrue
		})
		time.Sleep(5 * time.Second)
		if after := ruleset(t, hv); after != before {
			t.Errorf("ruleset changed across the libvirtd restart:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		for _, vm := range []*v1alpha1.VirtualMachine{a1, a2} {
			if got := framework.QEMUPID(t, string(vm.UID)); got != pids[vm.Name] {
				t.Errorf("VM %s: QEMU pid %d after the libvirtd restart, was %d", vm.Name, got, pids[vm.Name])
			}
		}
		// The taps stayed on their bridge: the guests still reach each other.
		sh1, sh2 = e.shell(t, a1), e.shell(t, a2)
		if !ping(t, sh1, ipA2) || !ping(t, sh2, ipA1) {
			t.Error("team-a's VMs cannot ping each other after the libvirtd restart")
		}
		if got := primaryIP(t, e.WaitPhase(t, "team-a", a1.Name, v1alpha1.VirtualMachineRunning)); got != ipA1 {
			t.Errorf("address changed across the libvirtd restart: %s then %s", ipA1, got)
		}
	})
}

// managedVM boots the test guest in namespace on hypervisor node, with the
// default interface, and waits until status shows its DHCP address.
func (e *env) managedVM(t testing.TB, namespace, name, node string) *v1alpha1.VirtualMachine {
	t.Helper()
	vm := framework.GuestVM(namespace, name)
	vm.Spec.NodeSelector = map[string]string{launcher.HypervisorLabel: node}
	if _, err := e.Admin.VesselV1alpha1().VirtualMachines(namespace).Create(context.Background(), vm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create VM %s/%s: %v", namespace, name, err)
	}
	t.Cleanup(func() {
		_ = e.Admin.VesselV1alpha1().VirtualMachines(namespace).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	got := e.WaitVM(t, namespace, name, 3*time.Minute, "a DHCP address", func(vm *v1alpha1.VirtualMachine) bool {
		return vm.Status.Phase == v1alpha1.VirtualMachineRunning && len(vm.Status.Interfaces) > 0 && vm.Status.Interfaces[0].IPAddress != ""
	})
	if got.Spec.Interfaces[0].Type != v1alpha1.InterfaceTypeManaged {
		t.Errorf("default interface type %q, want Managed", got.Spec.Interfaces[0].Type)
	}
	e.WaitLog(t, got, "VESSEL-BOOT done")
	return got
}

func primaryIP(t testing.TB, vm *v1alpha1.VirtualMachine) netip.Addr {
	t.Helper()
	is := vm.Status.Interfaces[0]
	if len(is.IPAddresses) == 0 || is.IPAddresses[0].Source != v1alpha1.IPAddressSourceDHCP || is.IPAddresses[0].Address != is.IPAddress {
		t.Fatalf("VM %s/%s interface status %+v: want the primary address from DHCP", vm.Namespace, vm.Name, is)
	}
	a, err := netip.ParseAddr(is.IPAddress)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func want(vm *v1alpha1.VirtualMachine) string { return vm.Status.Interfaces[0].MACAddress }

// ruleset is nft list ruleset in the hypervisor's network namespace.
func ruleset(t testing.TB, hv launcher.Hypervisor) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", hv.Netns, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset in %s: %v\n%s", hv.Netns, err, out)
	}
	return string(out)
}
