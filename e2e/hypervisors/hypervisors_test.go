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

package hypervisors

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/launcher"
	"github.com/vessel-vm/vessel/launcher/libvirtd"
)

func TestTwoHypervisors(t *testing.T) {
	sys := framework.NewSystem(t, "e2e-hv")
	sys.Up(t, "--hypervisors=2")
	// The last subtest destroys all; cleanups have nothing left to do then.
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			sys.Down(t)
		}
	})
	hvs := sys.Hypervisors(t)
	if len(hvs) != 2 {
		t.Fatalf("hypervisors %+v, want two", hvs)
	}

	t.Run("kubectl get hv shows both, Ready", func(t *testing.T) {
		out, err := sys.Kubectl(t, "get", "hv", "--no-headers")
		if err != nil {
			t.Fatalf("kubectl get hv: %v\n%s", err, out)
		}
		for _, hv := range hvs {
			obj, err := sys.Vessel.VesselV1alpha1().Hypervisors().Get(t.Context(), hv.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !meta.IsStatusConditionTrue(obj.Status.Conditions, v1alpha1.HypervisorConditionReady) {
				t.Errorf("%s is not Ready: %+v", hv.Name, obj.Status.Conditions)
			}
			if !strings.Contains(out, hv.Name+" ") {
				t.Errorf("kubectl get hv does not list %s:\n%s", hv.Name, out)
			}
		}
	})

	// One guest on each hypervisor, picked by the label the launcher puts
	// on it.
	ns := "default"
	guests := map[string]*v1alpha1.VirtualMachine{} // by hypervisor
	qemus := map[string]int{}
	for _, hv := range hvs {
		vm := sys.RunningGuest(t, ns, "on-"+hv.Name, map[string]string{launcher.HypervisorLabel: hv.Name})
		t.Cleanup(func() {
			if !destroyed {
				sys.DeleteGuest(t, vm)
			}
		})
		if vm.Status.NodeName != hv.Name {
			t.Fatalf("VM %s runs on %s, want %s", vm.Name, vm.Status.NodeName, hv.Name)
		}
		guests[hv.Name] = vm
		qemus[hv.Name] = framework.QEMUPID(t, string(vm.UID))
	}

	t.Run("each guest's QEMU runs in its hypervisor's namespaces", func(t *testing.T) {
		for _, hv := range hvs {
			pid := qemus[hv.Name]
			sameFile(t, fmt.Sprintf("/proc/%d/ns/net", pid), hv.LibvirtHost().NetnsPath())
			notSameFile(t, fmt.Sprintf("/proc/%d/ns/net", pid), "/proc/self/ns/net")
			notSameFile(t, fmt.Sprintf("/proc/%d/ns/mnt", pid), "/proc/self/ns/mnt")
			// Its mounts are the hypervisor's: libvirt's directories are
			// the hypervisor's own.
			sameFile(t, fmt.Sprintf("/proc/%d/root/run/libvirt", pid), filepath.Join(hv.Dir, "run"))
			sameFile(t, fmt.Sprintf("/proc/%d/root/var/lib/libvirt", pid), filepath.Join(hv.Dir, "lib"))
			if got, _ := hv.LibvirtHost().QEMUPIDs(); !slices.Equal(got, []int{pid}) {
				t.Errorf("%s: QEMU processes in its network namespace %v, want just its guest's %d", hv.Name, got, pid)
			}
		}
	})

	t.Run("the hypervisors reach each other over the fabric", func(t *testing.T) {
		for _, pair := range [][2]launcher.Hypervisor{{hvs[0], hvs[1]}, {hvs[1], hvs[0]}} {
			from, to := pair[0], pair[1]
			var l net.Listener
			if err := libvirtd.InNetns(to.Netns, func() (err error) {
				l, err = net.Listen("tcp", net.JoinHostPort(to.Address.Addr().String(), "0"))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			go func() {
				if c, err := l.Accept(); err == nil {
					fmt.Fprint(c, "hello from "+to.Name)
					c.Close()
				}
			}()
			var got []byte
			err := libvirtd.InNetns(from.Netns, func() error {
				c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				got, err = io.ReadAll(c)
				return err
			})
			l.Close()
			if err != nil || string(got) != "hello from "+to.Name {
				t.Errorf("%s -> %s at %s: read %q, %v", from.Name, to.Name, l.Addr(), got, err)
			}
		}
	})

	t.Run("the machine's network namespace has no part in it", func(t *testing.T) {
		fabric := hvs[0].Address.Masked()
		ifaces, err := net.Interfaces()
		if err != nil {
			t.Fatal(err)
		}
		for _, iface := range ifaces {
			if iface.Name == libvirtd.FabricLink || iface.Name == "fabric" || strings.HasPrefix(iface.Name, "hv") {
				t.Errorf("interface %s is in the machine's network namespace", iface.Name)
			}
			addrs, _ := iface.Addrs()
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil && fabric.Contains(p.Addr()) {
					t.Errorf("the machine has the fabric address %s on %s", p, iface.Name)
				}
			}
		}
		// No route of the machine's leads into the fabric (its default
		// route leads to its own network, which no test sends to).
		out, err := exec.Command("ip", "-o", "route", "show", "table", "all").CombinedOutput()
		if err != nil {
			t.Fatalf("ip route: %v\n%s", err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			fields := strings.Fields(line)
			if len(fields) > 1 && (fields[0] == "local" || fields[0] == "broadcast" || fields[0] == "multicast") {
				fields = fields[1:]
			}
			if len(fields) == 0 || fields[0] == "default" {
				continue
			}
			dst := fields[0]
			if !strings.Contains(dst, "/") {
				dst += "/32"
			}
			if p, err := netip.ParsePrefix(dst); err == nil && p.Overlaps(fabric) {
				t.Errorf("the machine has a route into the fabric %s: %s", fabric, line)
			}
		}
	})

	t.Run("a libvirtd killed with SIGKILL comes back in the same namespaces and keeps its guest", func(t *testing.T) {
		hv := hvs[0]
		name := launcher.LibvirtdComponent(hv.Name)
		before := sys.Status(t).Component(name)
		if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		back := waitBack(t, sys, name, before.PID)
		sameFile(t, fmt.Sprintf("/proc/%d/ns/net", back.PID), hv.LibvirtHost().NetnsPath())
		sameFile(t, fmt.Sprintf("/proc/%d/ns/mnt", back.PID), hv.LibvirtHost().MountNamespace())
		vm := guests[hv.Name]
		if got := framework.QEMUPID(t, string(vm.UID)); got != qemus[hv.Name] {
			t.Errorf("QEMU pid %d after libvirtd came back, was %d", got, qemus[hv.Name])
		}
		out, err := exec.Command("virsh", "-c", hv.URI(), "domstate", string(vm.UID)).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "running" {
			t.Errorf("virsh domstate on the new libvirtd: %q, %v", out, err)
		}
		// The agent works through the new libvirtd: a pause is carried out.
		if out, err := sys.Kubectl(t, "vm", "-n", ns, "pause", vm.Name); err != nil {
			t.Fatalf("kubectl vm pause: %v\n%s", err, out)
		}
		sys.WaitPhase(t, ns, vm.Name, v1alpha1.VirtualMachinePaused)
		if out, err := sys.Kubectl(t, "vm", "-n", ns, "unpause", vm.Name); err != nil {
			t.Fatalf("kubectl vm unpause: %v\n%s", err, out)
		}
		sys.WaitPhase(t, ns, vm.Name, v1alpha1.VirtualMachineRunning)
	})

	t.Run("vessel-up --down, then vessel-up: the guests are adopted", func(t *testing.T) {
		virtlogds := map[string]int{}
		for _, hv := range hvs {
			virtlogds[hv.Name] = sys.Status(t).Component(launcher.VirtlogdComponent(hv.Name)).PID
		}
		sys.Down(t)
		for _, hv := range hvs {
			if got := framework.QEMUPID(t, string(guests[hv.Name].UID)); got != qemus[hv.Name] {
				t.Errorf("%s: QEMU pid %d after --down, was %d", hv.Name, got, qemus[hv.Name])
			}
		}
		sys.Up(t)
		for _, hv := range hvs {
			vm := sys.WaitPhase(t, ns, guests[hv.Name].Name, v1alpha1.VirtualMachineRunning)
			if got := framework.QEMUPID(t, string(vm.UID)); got != qemus[hv.Name] {
				t.Errorf("%s: QEMU pid %d after vessel-up, was %d: the guest was restarted", hv.Name, got, qemus[hv.Name])
			}
			// Its console log went on through the virtlogd that stayed.
			c := sys.Status(t).Component(launcher.VirtlogdComponent(hv.Name))
			if c.PID != virtlogds[hv.Name] {
				t.Errorf("%s: virtlogd pid %d, was %d; it should have stayed with its guest", hv.Name, c.PID, virtlogds[hv.Name])
			}
		}
	})

	t.Run("vessel-up --destroy ends the guests and removes the namespaces", func(t *testing.T) {
		stdout, stderr, err := sys.VesselUp(t, "--destroy")
		destroyed = true
		if err != nil {
			t.Fatalf("vessel-up --destroy: %v\n%s%s", err, stdout, stderr)
		}
		for _, hv := range hvs {
			if _, err := os.Stat(hv.LibvirtHost().NetnsPath()); !os.IsNotExist(err) {
				t.Errorf("%s: network namespace %s is still there (%v)", hv.Name, hv.Netns, err)
			}
			if alive(qemus[hv.Name]) {
				t.Errorf("%s: the guest's QEMU (pid %d) still runs", hv.Name, qemus[hv.Name])
			}
			data, _ := os.ReadFile("/proc/self/mountinfo")
			if strings.Contains(string(data), hv.Dir+"/") {
				t.Errorf("%s: something is still mounted under %s", hv.Name, hv.Dir)
			}
		}
		if left := sys.Leftovers(t); len(left) > 0 {
			t.Errorf("still running after --destroy:\n%s", strings.Join(left, "\n"))
		}
	})
}

// waitBack waits until the supervisor has the component running and
// ready again, in a new process.
func waitBack(t *testing.T, sys *framework.System, name string, old int) launcher.ComponentStatus {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c := sys.Status(t).Component(name)
		if c != nil && c.State == launcher.StateRunning && c.PID != 0 && c.PID != old && alive(c.PID) {
			return *c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (killed pid %d) not back within 2m:\n%s", name, old, sys.StatusTable(t))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	if !isSameFile(t, a, b) {
		t.Errorf("%s is not %s", a, b)
	}
}

func notSameFile(t *testing.T, a, b string) {
	t.Helper()
	if isSameFile(t, a, b) {
		t.Errorf("%s is %s", a, b)
	}
}

func isSameFile(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(fa, fb)
}

func alive(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && len(cmdline) > 0
}
