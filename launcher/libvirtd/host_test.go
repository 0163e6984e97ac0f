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

package libvirtd

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
)

// guestDir is where `make deps` installs the test guest.
const guestDir = "/var/lib/vessel/images/vessel-guest"

func requireRealHosts(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs libvirtds in namespaces of their own; skipped in -short mode")
	}
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("VESSEL_E2E") != "" {
			t.Fatalf("VESSEL_E2E is set but "+format, args...)
		}
		t.Skipf(format+" (set VESSEL_E2E=1 to make this a failure)", args...)
	}
	if os.Geteuid() != 0 {
		missing("namespaces and mounts need root")
	}
	for _, p := range []string{"libvirtd", "virtlogd", "nsenter", "unshare", "ip", "findmnt"} {
		if _, err := exec.LookPath(lookPath(p)); err != nil {
			missing("%s is not installed (hack/install-libvirt.sh): %v", p, err)
		}
	}
}

// newTestHost is a host in dir; its namespaces are removed when the test
// ends, whatever it left running in them.
func newTestHost(t *testing.T, dir, id string, n int) Host {
	h := Host{
		Name:  fmt.Sprintf("h%d", n),
		Dir:   filepath.Join(dir, fmt.Sprintf("h%d", n)),
		Netns: fmt.Sprintf("vessel-test-%s-%d", id, n),
		UUID:  uuid.NewString(),
	}
	t.Cleanup(func() {
		if err := h.Remove(context.Background()); err != nil {
			t.Errorf("remove: %v", err)
		}
		if _, err := os.Stat(h.NetnsPath()); !os.IsNotExist(err) {
			t.Errorf("network namespace %s is still there after Remove (%v)", h.Netns, err)
		}
		if isNamespacePin(h.MountNamespace()) {
			t.Errorf("the mount namespace of %s is still pinned after Remove", h.Name)
		}
	})
	return h
}

// Two hosts side by side, as the launcher runs them: each libvirtd in its
// own network and mount namespace with its own directories and host UUID,
// the two connected over the fabric and nothing of it in the machine's
// network namespace; a libvirtd killed with SIGKILL and started again
// enters the same namespaces and adopts its guest (same QEMU process).
func TestHostsSideBySide(t *testing.T) {
	requireRealHosts(t)
	// Short: the client socket's path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "lvd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	id := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	seed := filepath.Join(dir, "seed")
	fabric := Fabric{Netns: "vessel-test-" + id + "-fabric", Bridge: "fabric"}
	t.Cleanup(func() {
		if err := fabric.Remove(context.Background()); err != nil {
			t.Error(err)
		}
	})
	ctx := t.Context()
	if err := fabric.Ensure(ctx); err != nil {
		t.Fatal(err)
	}

	var hosts []Host
	var daemons []*Daemons
	for n := 1; n <= 2; n++ {
		h := newTestHost(t, dir, id, n)
		h.CapabilitiesSeed = seed
		begin := time.Now()
		d, err := Start(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Stop)
		t.Logf("%s: libvirtd answers %v after start", h.Name, time.Since(begin).Round(time.Millisecond))
		if files, err := cacheFiles(seed); err != nil || len(files) == 0 {
			t.Errorf("no QEMU capabilities seed after %s started (%v)", h.Name, err)
		}
		if err := fabric.Attach(ctx, h, fmt.Sprintf("hv%d", n), netip.MustParsePrefix(fmt.Sprintf("10.250.0.%d/24", 10+n))); err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, h)
		daemons = append(daemons, d)
	}

	t.Run("each libvirtd runs in its own namespaces, with its own directories and UUID", func(t *testing.T) {
		for i, h := range hosts {
			pid := daemons[i].Libvirtd()
			sameFile(t, fmt.Sprintf("/proc/%d/ns/net", pid), h.NetnsPath())
			sameFile(t, fmt.Sprintf("/proc/%d/ns/mnt", pid), h.MountNamespace())
			sameFile(t, fmt.Sprintf("/proc/%d/root/run/libvirt", pid), filepath.Join(h.Dir, "run"))
			sameFile(t, fmt.Sprintf("/proc/%d/root/etc/libvirt", pid), filepath.Join(h.Dir, "etc"))
			caps := capabilities(t, h)
			if !strings.Contains(caps, "<uuid>"+h.UUID+"</uuid>") {
				t.Errorf("%s: capabilities do not carry its host UUID %s", h.Name, h.UUID)
			}
			// /sys shows the host's network devices, not the machine's.
			links, err := os.ReadDir(fmt.Sprintf("/proc/%d/root/sys/class/net", pid))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, l := range links {
				names = append(names, l.Name())
			}
			if strings.Join(names, " ") != "fabric0 lo" {
				t.Errorf("%s: /sys/class/net in its namespace lists %v, want fabric0 and lo", h.Name, names)
			}
		}
	})

	t.Run("the hosts reach each other over the fabric", func(t *testing.T) {
		var l net.Listener
		if err := InNetns(hosts[1].Netns, func() (err error) {
			l, err = net.Listen("tcp", "10.250.0.12:0")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			if c, err := l.Accept(); err == nil {
				fmt.Fprint(c, "hello from h2")
				c.Close()
			}
		}()
		var got []byte
		if err := InNetns(hosts[0].Netns, func() error {
			c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			got, err = io.ReadAll(c)
			return err
		}); err != nil {
			t.Fatalf("h1 -> h2 over the fabric: %v", err)
		}
		if string(got) != "hello from h2" {
			t.Errorf("h1 read %q from h2", got)
		}
	})

	t.Run("the machine's network namespace has none of it", func(t *testing.T) {
		ifaces, err := net.Interfaces()
		if err != nil {
			t.Fatal(err)
		}
		fabricNet := netip.MustParsePrefix("10.250.0.0/24")
		for _, iface := range ifaces {
			if iface.Name == FabricLink || strings.HasPrefix(iface.Name, "hv") || iface.Name == "fabric" {
				t.Errorf("interface %s is in the machine's network namespace", iface.Name)
			}
			addrs, _ := iface.Addrs()
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil && fabricNet.Contains(p.Addr()) {
					t.Errorf("the machine has fabric address %s on %s", p, iface.Name)
				}
			}
		}
	})

	// qemu.conf hides "unavailable-features" from libvirt (see qemuConf):
	// libvirt must still read the guest CPU back and verify it, and QEMU
	// must be given the CPU the domain asks for.
	t.Run("libvirt reads the guest CPU back", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(guestDir, "vmlinuz")); err != nil {
			t.Skipf("no test guest (make deps): %v", err)
		}
		h := hosts[1]
		conn := connect(t, h)
		defer conn.Disconnect()
		name := "lvdcpu-" + id
		xml := strings.Replace(guestXML(name, uuid.NewString(), filepath.Join(dir, "cpu-console.log")), "<devices>",
			"<cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model></cpu>\n  <devices>", 1)
		dom, err := conn.DomainCreateXML(xml, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.DomainDestroy(dom) }()
		live, err := conn.DomainGetXMLDesc(dom, 0)
		if err != nil {
			t.Fatal(err)
		}
		// check='full' and the features QEMU turned on for qemu64 are
		// what libvirt writes after it has read the CPU back.
		for _, want := range []string{"check='full'", "<model fallback='forbid'>qemu64</model>", "name='hypervisor'/>"} {
			if !strings.Contains(live, want) {
				t.Errorf("the running domain's XML lacks %s:\n%s", want, live)
			}
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pidFile(t, h.QEMUPIDFile(name))))
		if err != nil {
			t.Fatal(err)
		}
		if args := strings.Split(string(cmdline), "\x00"); !strings.Contains(strings.Join(args, " "), " -cpu qemu64 ") {
			t.Errorf("QEMU runs without -cpu qemu64: %q", args)
		}
	})

	t.Run("a killed libvirtd comes back in the same namespaces and adopts its guest", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(guestDir, "vmlinuz")); err != nil {
			t.Skipf("no test guest (make deps): %v", err)
		}
		h := hosts[0]
		domUUID := uuid.NewString()
		conn := connect(t, h)
		if _, err := conn.DomainCreateXML(guestXML("lvdtest-"+id, domUUID, filepath.Join(dir, "console.log")), 0); err != nil {
			t.Fatal(err)
		}
		conn.Disconnect()
		qemu := pidFile(t, h.QEMUPIDFile("lvdtest-"+id))
		sameFile(t, fmt.Sprintf("/proc/%d/ns/net", qemu), h.NetnsPath())
		sameFile(t, fmt.Sprintf("/proc/%d/root/run/libvirt", qemu), filepath.Join(h.Dir, "run"))

		old := daemons[0].procs[1]
		if err := syscall.Kill(old.cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-old.exited
		p, err := startDaemon(h, "libvirtd", h.LibvirtdCommand())
		if err != nil {
			t.Fatal(err)
		}
		daemons[0].procs[1] = p
		begin := time.Now()
		if err := daemons[0].waitReady(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("libvirtd answers %v after its restart", time.Since(begin).Round(time.Millisecond))
		sameFile(t, fmt.Sprintf("/proc/%d/ns/net", p.cmd.Process.Pid), h.NetnsPath())
		sameFile(t, fmt.Sprintf("/proc/%d/ns/mnt", p.cmd.Process.Pid), h.MountNamespace())
		conn = connect(t, h)
		defer conn.Disconnect()
		dom, err := conn.DomainLookupByUUID(golibvirt.UUID(uuid.MustParse(domUUID)))
		if err != nil {
			t.Fatalf("the guest is gone after the restart: %v", err)
		}
		if state, _, err := conn.DomainGetState(dom, 0); err != nil || golibvirt.DomainState(state) != golibvirt.DomainRunning {
			t.Errorf("guest state %d (%v), want running", state, err)
		}
		if got := pidFile(t, h.QEMUPIDFile("lvdtest-"+id)); got != qemu || !alive(qemu) {
			t.Errorf("QEMU pid %d after the restart, was %d (alive: %v)", got, qemu, alive(qemu))
		}
		// The other host never saw it.
		other := connect(t, hosts[1])
		defer other.Disconnect()
		if _, err := other.DomainLookupByUUID(golibvirt.UUID(uuid.MustParse(domUUID))); err == nil {
			t.Errorf("h2's libvirtd knows h1's guest")
		}
	})
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	fa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(fa, fb) {
		t.Errorf("%s is not %s", a, b)
	}
}

func connect(t *testing.T, h Host) *golibvirt.Libvirt {
	t.Helper()
	conn := golibvirt.NewWithDialer(deadlineDialer{ctx: t.Context(), socket: h.Socket()})
	if err := conn.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		t.Fatal(err)
	}
	return conn
}

func capabilities(t *testing.T, h Host) string {
	t.Helper()
	conn := connect(t, h)
	defer conn.Disconnect()
	caps, err := conn.ConnectGetCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	return caps
}

func pidFile(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

func alive(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && len(cmdline) > 0
}

func guestXML(name, uuid, consoleLog string) string {
	return fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <uuid>%s</uuid>
  <memory unit='MiB'>96</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>%[3]s/vmlinuz</kernel><initrd>%[3]s/initrd.img</initrd><cmdline>console=ttyS0 quiet</cmdline></os>
  <devices>
    <serial type='pty'><log file='%[4]s' append='off'/><target port='0'/></serial>
  </devices>
</domain>`, name, uuid, guestDir, consoleLog)
}
