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

package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
	"github.com/vessel-vm/vessel/e2e/pidfile"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher/libvirtd"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/internal/needs"
)

const (
	namespace  = "bench"
	guestMiB   = 96
	bootMarker = "VESSEL-GUEST READY"
)

type image struct{ url, sum string }

// BenchmarkBoot runs once whatever b.N is (use -benchtime 1x).
func BenchmarkBoot(b *testing.B) {
	host := needs.Libvirt(b) // a libvirtd of the benchmark's own
	repo, _ := filepath.Abs("../..")
	guest := filepath.Join(repo, "_output", "guest")
	if _, err := os.Stat(filepath.Join(guest, "vmlinuz")); err != nil {
		b.Skipf("test guest missing: run hack/build-guest.sh")
	}
	nTimed := apiservertesting.Env("VESSEL_BENCH_VMS", 10)
	nMax := max(apiservertesting.Env("VESSEL_BENCH_MAX", 20), nTimed)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The agent runs as its own process so its RSS and CPU time are its own.
	work := b.TempDir()
	agentBin := filepath.Join(work, "vessel-agent")
	build := exec.Command("go", "build", "-o", agentBin, "./cmd/vessel-agent")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build vessel-agent: %v\n%s", err, out)
	}

	server := apiservertesting.Start(b, apiservertesting.Options{})
	client := server.Client
	kubeconfig := filepath.Join(work, "kubeconfig")
	writeKubeconfig(b, server, kubeconfig)

	images := map[string]image{}
	srv := httptest.NewServer(http.FileServer(http.Dir(guest)))
	defer srv.Close()
	for _, f := range []string{"vmlinuz", "initrd.img", "disk.img"} {
		data, err := os.ReadFile(filepath.Join(guest, f))
		if err != nil {
			b.Fatal(err)
		}
		s := sha256.Sum256(data)
		images[f] = image{srv.URL + "/" + f, hex.EncodeToString(s[:])}
	}

	hvName := "bench-" + rand.String(5)
	stateDir := filepath.Join(work, "state")
	agent := exec.CommandContext(ctx, agentBin,
		"--kubeconfig="+kubeconfig, "--hypervisor-name="+hvName, "--state-dir="+stateDir,
		"--kvm=auto", "--kvm-probe-kernel="+filepath.Join(guest, "vmlinuz"), "--events=auto", "-v=1",
		"--libvirt-socket="+host.Socket(),
		// The guests' managed network (bridge, DHCP, nftables) goes where
		// the benchmark's libvirtd runs, never in the machine's namespace.
		"--network-namespace="+host.NetnsPath(),
		"--image-allowed-cidrs=127.0.0.1/32") // the image server listens on loopback
	logFile, _ := os.Create(filepath.Join(work, "agent.log"))
	agent.Stdout, agent.Stderr = logFile, logFile
	defer func() {
		if b.Failed() {
			if data, err := os.ReadFile(logFile.Name()); err == nil {
				b.Logf("the agent's log:\n%s", data[max(0, len(data)-20000):])
			}
		}
	}()
	if err := agent.Start(); err != nil {
		b.Fatal(err)
	}
	lv := hypervisor.NewLibvirt(host.Socket())
	go lv.Run(ctx)
	defer cleanupDomains(lv, hvName)
	defer func() { _ = agent.Process.Kill(); _ = agent.Wait() }()
	// The agent probes KVM with a real boot (--kvm=auto) and reports what
	// its guests get; the baseline uses the same accelerator.
	accel := "tcg"
	if waitHypervisor(b, ctx, client, hvName).Status.KVM {
		accel = "kvm"
	}

	// Baseline first, with the agent idle: plain QEMU, same guest, devices
	// and accelerator.
	direct := directQEMU(b, guest, work, accel, nTimed)

	idle := sampleAgent(agent.Process.Pid, 10*time.Second)

	vms := client.VesselV1alpha1().VirtualMachines(namespace)
	deleteAndWait := func(names ...string) time.Duration {
		t0 := time.Now()
		for _, n := range names {
			_ = vms.Delete(ctx, n, metav1.DeleteOptions{})
		}
		_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
			l, err := vms.List(ctx, metav1.ListOptions{})
			return err == nil && len(l.Items) == 0, nil
		})
		return time.Since(t0)
	}

	// One guest at a time, deleted before the next: the fair comparison
	// with plain QEMU. The first one also fills the image cache.
	var running, banner, deletes []time.Duration
	for i := 0; i < nTimed; i++ {
		name := fmt.Sprintf("solo-%02d-%s", i, rand.String(4))
		r, c := bootOne(b, ctx, client, hvName, stateDir, images, name)
		running, banner = append(running, r), append(banner, c)
		if got := domainAccel(b, ctx, client, host, name); got != accel {
			b.Fatalf("VM %s runs on QEMU with -accel %s, the baseline with %s: the comparison would not be like with like", name, got, accel)
		}
		time.Sleep(2 * time.Second) // let it finish booting: ACPI needs acpid
		deletes = append(deletes, deleteAndWait(name))
	}

	// Then scale up, guests staying on: boots now share the CPUs with the
	// guests already running.
	var loadedRunning, loadedBanner []time.Duration
	var names []string
	var mid usage
	for i := 0; i < nMax; i++ {
		name := fmt.Sprintf("bench-%02d-%s", i, rand.String(4))
		names = append(names, name)
		r, c := bootOne(b, ctx, client, hvName, stateDir, images, name)
		loadedRunning, loadedBanner = append(loadedRunning, r), append(loadedBanner, c)
		if i+1 == nTimed && nTimed < nMax {
			time.Sleep(5 * time.Second)
			mid = sampleAgent(agent.Process.Pid, 15*time.Second)
		}
	}
	// Let the guests finish booting before measuring the steady state.
	time.Sleep(5 * time.Second)
	loaded := sampleAgent(agent.Process.Pid, 20*time.Second)
	deleteAll := deleteAndWait(names...)

	report := func(label string, d []time.Duration) (p50, p95 time.Duration) {
		p50, p95 = percentile(d, 50), percentile(d, 95)
		fmt.Printf("%-44s p50 %6.2fs  p95 %6.2fs  (n=%d)\n", label, p50.Seconds(), p95.Seconds(), len(d))
		return
	}
	fmt.Printf("--- one guest at a time (%s, %d MiB, 1 vCPU, kernel+initrd from URL images, qcow2 overlay, user-mode NIC) ---\n", strings.ToUpper(accel), guestMiB)
	r50, _ := report("vessel: create -> phase Running", running)
	c50, c95 := report("vessel: create -> banner on console", banner)
	d50, d95 := report("plain qemu-system-x86_64: exec -> banner", direct)
	fmt.Printf("%-44s p50 %6.2fx  p95 %6.2fx\n", "ratio vessel/plain (banner)", c50.Seconds()/d50.Seconds(), c95.Seconds()/d95.Seconds())
	report("vessel: delete (ACPI stop) -> gone", deletes)
	fmt.Printf("--- scaling up to %d guests, each booting while the others run ---\n", nMax)
	report("vessel: create -> phase Running", loadedRunning)
	report("vessel: create -> banner on console", loadedBanner)
	fmt.Printf("%-44s %6.2fs (%d VMs)\n", "delete all at once -> all gone", deleteAll.Seconds(), len(names))
	fmt.Println("--- vessel-agent process ---")
	fmt.Printf("%-12s RSS %6.1f MiB  CPU %5.2f%% of one core (%.2fs over %s)\n", "0 VMs", idle.rssMiB, idle.cpuPercent(), idle.cpu.Seconds(), idle.window)
	if mid.window > 0 {
		fmt.Printf("%-12s RSS %6.1f MiB  CPU %5.2f%% of one core (%.2fs over %s)\n", fmt.Sprintf("%d VMs", nTimed), mid.rssMiB, mid.cpuPercent(), mid.cpu.Seconds(), mid.window)
	}
	fmt.Printf("%-12s RSS %6.1f MiB  CPU %5.2f%% of one core (%.2fs over %s)\n", fmt.Sprintf("%d VMs", nMax), loaded.rssMiB, loaded.cpuPercent(), loaded.cpu.Seconds(), loaded.window)
	b.ReportMetric(r50.Seconds(), "s-to-running-p50")
	b.ReportMetric(c50.Seconds(), "s-to-banner-p50")
	b.ReportMetric(d50.Seconds(), "s-plain-qemu-banner-p50")
}

// bootOne creates and binds a VM and times it to phase Running and to the
// banner in its console log.
func bootOne(b *testing.B, ctx context.Context, client versioned.Interface, hvName, stateDir string, images map[string]image, name string) (toRunning, toBanner time.Duration) {
	vms := client.VesselV1alpha1().VirtualMachines(namespace)
	src := func(f string) *v1alpha1.ImageSource {
		return &v1alpha1.ImageSource{URL: images[f].url, SHA256: images[f].sum}
	}
	vm := &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: v1alpha1.VirtualMachineSpec{
			RunStrategy: v1alpha1.RunStrategyAlways,
			Memory:      resource.MustParse(fmt.Sprintf("%dMi", guestMiB)),
			Kernel: &v1alpha1.KernelBoot{
				Kernel: v1alpha1.FileSource{Image: src("vmlinuz")}, Initrd: &v1alpha1.FileSource{Image: src("initrd.img")},
				Cmdline: "console=ttyS0 quiet",
			},
			Disks: []v1alpha1.Disk{{Name: "data", Image: src("disk.img")}},
			// User-mode NAT, as the plain QEMU baseline has (-nic user).
			Interfaces: []v1alpha1.Interface{{Name: "default", Type: v1alpha1.InterfaceTypeUser}},
		},
	}
	t0 := time.Now()
	created, err := vms.Create(ctx, vm, metav1.CreateOptions{})
	if err != nil {
		b.Fatalf("create %s: %v", name, err)
	}
	if _, err := vms.Bind(ctx, name, &v1alpha1.VirtualMachineBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Target: hvName}, metav1.CreateOptions{}); err != nil {
		// A scheduler in the server may have bound it already.
		if cur, gerr := vms.Get(ctx, name, metav1.GetOptions{}); gerr != nil || cur.Spec.NodeName != hvName {
			b.Fatalf("bind %s: %v", name, err)
		}
	}
	console := filepath.Join(stateDir, "vms", string(created.UID), "console.log")
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		if toRunning == 0 {
			if cur, err := vms.Get(ctx, name, metav1.GetOptions{}); err == nil && cur.Status.Phase == v1alpha1.VirtualMachineRunning {
				toRunning = time.Since(t0)
			}
		}
		if toBanner == 0 {
			if data, err := os.ReadFile(console); err == nil && strings.Contains(string(data), bootMarker) {
				toBanner = time.Since(t0)
			}
		}
		return toRunning > 0 && toBanner > 0, nil
	})
	if err != nil {
		b.Fatalf("VM %s did not boot: running after %s, banner after %s", name, toRunning, toBanner)
	}
	return toRunning, toBanner
}

// directQEMU boots the guest n times with plain QEMU (what libvirt would
// run, minus libvirt) with accel ("kvm" or "tcg", as the agent's guests)
// and times exec to the banner on the serial console.
func directQEMU(b *testing.B, guest, work, accel string, n int) []time.Duration {
	// As the agent's domain XML: TCG with a 32 MiB translation cache.
	accelArg := "kvm"
	if accel == "tcg" {
		accelArg = "tcg,tb-size=32"
	}
	var out []time.Duration
	for i := 0; i < n; i++ {
		dir := filepath.Join(work, fmt.Sprintf("direct-%d", i))
		_ = os.MkdirAll(dir, 0o755)
		overlay := filepath.Join(dir, "disk.qcow2")
		if o, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", filepath.Join(guest, "disk.img"), overlay).CombinedOutput(); err != nil {
			b.Fatalf("qemu-img: %v %s", err, o)
		}
		console := filepath.Join(dir, "console.log")
		t0 := time.Now()
		cmd := exec.Command("qemu-system-x86_64", "-machine", "pc", "-accel", accelArg,
			"-m", strconv.Itoa(guestMiB), "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
			"-kernel", filepath.Join(guest, "vmlinuz"), "-initrd", filepath.Join(guest, "initrd.img"),
			"-append", "console=ttyS0 quiet", "-serial", "file:"+console,
			"-drive", "file="+overlay+",if=virtio,format=qcow2", "-nic", "user,model=virtio-net-pci")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		var d time.Duration
		_ = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
			data, _ := os.ReadFile(console)
			if strings.Contains(string(data), bootMarker) {
				d = time.Since(t0)
				return true, nil
			}
			select {
			case <-exited:
				return false, fmt.Errorf("exited")
			default:
				return false, nil
			}
		})
		_ = cmd.Process.Kill()
		<-exited
		if d == 0 {
			b.Fatalf("plain QEMU guest %d did not print its banner: %s", i, stderr.String())
		}
		out = append(out, d)
	}
	return out
}

type usage struct {
	rssMiB float64
	cpu    time.Duration
	window time.Duration
}

func (u usage) cpuPercent() float64 { return 100 * u.cpu.Seconds() / u.window.Seconds() }

// sampleAgent measures the process's CPU time over window and its RSS at the end.
func sampleAgent(pid int, window time.Duration) usage {
	c0 := cpuTime(pid)
	time.Sleep(window)
	return usage{rssMiB: float64(rssKiB(pid)) / 1024, cpu: cpuTime(pid) - c0, window: window}
}

func rssKiB(pid int) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// cpuTime is utime+stime from /proc/<pid>/stat (clock ticks of 10 ms).
func cpuTime(pid int) time.Duration {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	idx := (p*len(s) + 99) / 100 // nearest rank
	return s[max(idx-1, 0)]
}

// waitHypervisor returns the Hypervisor once the agent has registered it
// and sent a heartbeat.
func waitHypervisor(b *testing.B, ctx context.Context, client versioned.Interface, name string) *v1alpha1.Hypervisor {
	var hv *v1alpha1.Hypervisor
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		hv, err = client.VesselV1alpha1().Hypervisors().Get(ctx, name, metav1.GetOptions{})
		return err == nil && hv.Status.LastHeartbeatTime != nil, nil
	})
	if err != nil {
		b.Fatalf("agent did not register hypervisor %s", name)
	}
	return hv
}

// domainAccel is the accelerator the QEMU of VM name (in the bench
// namespace) runs with, from its command line: "kvm" or "tcg".
func domainAccel(b *testing.B, ctx context.Context, client versioned.Interface, host libvirtd.Host, name string) string {
	vm, err := client.VesselV1alpha1().VirtualMachines(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		b.Fatalf("VM %s: %v", name, err)
	}
	pid, err := pidfile.Read(host.QEMUPIDFile(hypervisor.DomainName(namespace, name, string(vm.UID))))
	if err != nil {
		b.Fatalf("QEMU of VM %s: %v", name, err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		b.Fatalf("QEMU of VM %s: %v", name, err)
	}
	args := strings.Split(string(cmdline), "\x00")
	for i, arg := range args[:len(args)-1] {
		if arg == "-accel" {
			accel, _, _ := strings.Cut(args[i+1], ",")
			return accel
		}
		// Older libvirt: -machine pc,accel=kvm,...
		if arg == "-machine" {
			for _, opt := range strings.Split(args[i+1], ",") {
				if accel, ok := strings.CutPrefix(opt, "accel="); ok {
					return accel
				}
			}
		}
	}
	b.Fatalf("QEMU of VM %s names no accelerator: %q", name, args)
	return ""
}

func writeKubeconfig(b *testing.B, s *apiservertesting.TestServer, path string) {
	c := s.ClientConfig
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["vessel"] = &clientcmdapi.Cluster{
		Server: c.Host, CertificateAuthorityData: c.TLSClientConfig.CAData, TLSServerName: c.TLSClientConfig.ServerName,
		InsecureSkipTLSVerify: c.TLSClientConfig.Insecure,
	}
	cfg.AuthInfos["agent"] = &clientcmdapi.AuthInfo{Token: c.BearerToken}
	cfg.Contexts["vessel"] = &clientcmdapi.Context{Cluster: "vessel", AuthInfo: "agent"}
	cfg.CurrentContext = "vessel"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		b.Fatal(err)
	}
}

func cleanupDomains(lv *hypervisor.Libvirt, hvName string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	doms, err := lv.List(ctx)
	if err != nil && !errors.Is(err, hypervisor.ErrDisconnected) {
		return
	}
	for _, d := range doms {
		if d.Owner.Hypervisor == hvName {
			_ = lv.Destroy(ctx, d.UUID)
			_ = lv.Undefine(ctx, d.UUID)
		}
	}
}
