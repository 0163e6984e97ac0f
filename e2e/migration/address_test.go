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

package migration

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/launcher"
)

// webVM is the test guest serving "<name>-ok" with busybox httpd on port
// 80 of its Managed interface.
func webVM(namespace, name string) *v1alpha1.VirtualMachine {
	vm := framework.GuestVM(namespace, name)
	vm.Spec.Disks = []v1alpha1.Disk{{Name: "seed", CloudInit: &v1alpha1.CloudInitSource{UserData: "#!/bin/sh\n" +
		"mkdir -p /www && echo " + name + "-ok >/www/index.html && httpd -p 80 -h /www && echo VESSEL-WEB up\n"}}}
	return vm
}

// createWeb creates vm and, when the test ends, deletes it and waits until
// it is gone: the suite's later tests (a drain) find the hypervisors as
// they were.
func createWeb(t *testing.T, e *framework.Env, vm *v1alpha1.VirtualMachine) {
	t.Helper()
	vms := e.Admin.VesselV1alpha1().VirtualMachines(vm.Namespace)
	if _, err := vms.Create(context.Background(), vm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		err := vms.Delete(ctx, vm.Name, metav1.DeleteOptions{})
		if err == nil {
			err = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
				_, err := vms.Get(ctx, vm.Name, metav1.GetOptions{})
				return apierrors.IsNotFound(err), nil
			})
		}
		if err != nil {
			t.Errorf("delete VM %s/%s: %v", vm.Namespace, vm.Name, err)
		}
	})
}

// serving waits until the VM has an address from DHCP at which hv reaches
// its httpd, and returns that address.
func serving(t *testing.T, e *framework.Env, vm *v1alpha1.VirtualMachine, hv launcher.Hypervisor, timeout time.Duration) netip.Addr {
	t.Helper()
	var addr, last string
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		cur, err := e.Admin.VesselV1alpha1().VirtualMachines(vm.Namespace).Get(ctx, vm.Name, metav1.GetOptions{})
		if err != nil || len(cur.Status.Interfaces) == 0 || cur.Status.Interfaces[0].IPAddress == "" {
			last = "no address in status"
			return false, nil
		}
		addr = cur.Status.Interfaces[0].IPAddress
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", hv.Netns, "curl", "-sS", "-m", "3", "http://"+addr+"/").CombinedOutput()
		last = strings.TrimSpace(string(out))
		return err == nil && last == vm.Name+"-ok", nil
	})
	if err != nil {
		t.Fatalf("VM %s/%s not served from %s within %v (address %q, last answer %q)", vm.Namespace, vm.Name, hv.Name, timeout, addr, last)
	}
	return netip.MustParseAddr(addr)
}

// otherHypervisor is a hypervisor that is not name.
func otherHypervisor(t *testing.T, e *framework.Env, name string) launcher.Hypervisor {
	t.Helper()
	list, err := e.Admin.VesselV1alpha1().Hypervisors().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, hv := range list.Items {
		if hv.Name != name {
			return e.Hypervisor(t, hv.Name)
		}
	}
	t.Fatalf("no hypervisor but %s", name)
	return launcher.Hypervisor{}
}

// subnetTaken says whether a network on hv's managed network holds the
// /24 of addr, from the agent's state file.
func subnetTaken(t *testing.T, hv launcher.Hypervisor, addr netip.Addr) bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(hv.AgentStateDir(), "network", "state.json"))
	if os.IsNotExist(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Networks map[string]struct {
			Ports map[string]struct {
				IP string `json:"ip"`
			} `json:"ports"`
		} `json:"networks"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	want := netip.PrefixFrom(addr, 24).Masked()
	for _, n := range st.Networks {
		for _, p := range n.Ports {
			if a, err := netip.ParseAddr(p.IP); err == nil && want.Contains(a) {
				return true
			}
		}
	}
	return false
}

// The file is named to run first in the package (go test runs files in
// name order), on hypervisors no other test has put guests on yet, where
// the kept address can be checked; run after them, that part says SKIP.
// Its VMs are deleted when it ends, so the tests after it find the
// hypervisors empty again.
//
// A guest on the managed network stays reachable after a live migration:
// it keeps its address where the target can give it the same one (its
// namespace's /24 is free there), else its link is reset and it asks DHCP
// for its new one (the target already has a network of the namespace,
// whose first address a peer VM holds).
func TestManagedAddressAfterMigration(t *testing.T) {
	e := env(t)
	dumpAgentLogs(t, e)

	t.Run("kept where the subnet is free", func(t *testing.T) {
		ns := namespace(t, e, "migration-address-kept")
		createWeb(t, e, webVM(ns, "kept"))
		vm := e.WaitPhase(t, ns, "kept", v1alpha1.VirtualMachineRunning)
		source := e.HypervisorOf(t, vm)
		before := serving(t, e, vm, source, 3*time.Minute)
		target := otherHypervisor(t, e, source.Name)
		free := !subnetTaken(t, target, before)
		e.MustKubectl(t, "admin", "vm", "migrate", "kept", "-n", ns, "--to", target.Name, "--wait")
		after := serving(t, e, vm, target, time.Minute)
		t.Logf("%s on %s, %s on %s (its /24 free there: %v)", before, source.Name, after, target.Name, free)
		if !free {
			// Earlier tests' guests hold that /24 on the target: the
			// guest was reachable at its new address, but whether it
			// keeps one cannot be seen here.
			t.Skipf("the /24 of %s is another namespace's on %s: keeping the address is not checked", before, target.Name)
		}
		if after != before {
			t.Errorf("the guest's address changed from %s to %s, though its /24 was free on %s", before, after, target.Name)
		}
	})

	t.Run("renewed where it is taken", func(t *testing.T) {
		ns := namespace(t, e, "migration-address-renewed")
		createWeb(t, e, webVM(ns, "renewed"))
		vm := e.WaitPhase(t, ns, "renewed", v1alpha1.VirtualMachineRunning)
		source := e.HypervisorOf(t, vm)
		target := otherHypervisor(t, e, source.Name)
		peer := webVM(ns, "peer")
		peer.Spec.NodeSelector = map[string]string{launcher.HypervisorLabel: target.Name}
		createWeb(t, e, peer)
		before := serving(t, e, vm, source, 3*time.Minute)
		peerAddr := serving(t, e, e.WaitPhase(t, ns, "peer", v1alpha1.VirtualMachineRunning), target, 3*time.Minute)
		e.MustKubectl(t, "admin", "vm", "migrate", "renewed", "-n", ns, "--to", target.Name, "--wait")
		after := serving(t, e, vm, target, time.Minute)
		t.Logf("%s on %s, %s on %s (peer %s)", before, source.Name, after, target.Name, peerAddr)
		if after == peerAddr || after == before {
			t.Fatalf("the VM has %s on %s (it had %s, peer has %s): want a new address of its own", after, target.Name, before, peerAddr)
		}
		e.WaitLog(t, vm, "VESSEL-IP "+after.String()+" (link back)")
		if out := e.MustKubectl(t, "admin", "get", "events", "-n", ns, "--field-selector", "involvedObject.name=renewed"); !strings.Contains(out, "InterfacesReset") {
			t.Errorf("no InterfacesReset event for the VM:\n%s", out)
		}
	})
}
