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
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/google/uuid"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/node-agent/agent"
	"github.com/vessel-vm/vessel/node-agent/disks"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/internal/needs"
)

// snapshotGuestMiB is the guest the snapshot benchmark uses: its memory is
// what a snapshot with memory saves.
const snapshotGuestMiB = 128

// BenchmarkSnapshot times snapshots and restores of a running 128 MiB
// guest through Vessel (object created -> phase Succeeded, watched) next to
// the same libvirt operations called directly with go-libvirt on a
// scratch domain with the same definition, in the same run, interleaved so
// both see the same load. It runs once whatever b.N is:
//
//	go test ./node-agent/bench -run '^$' -bench Snapshot -benchtime 1x -timeout 30m
//
// VESSEL_BENCH_SNAPSHOTS (default 5) rounds are timed.
//
// "Without memory" is includeMemory=false on a running guest: libvirt
// still takes the same internal snapshot (QEMU cannot snapshot a running
// guest's disks internally without its memory), and the restore reverts
// with the guest off and boots it, so the direct column does the same
// (revert paused, destroy, start). Restores end when the domain runs
// again, not when the guest has booted.
func BenchmarkSnapshot(b *testing.B) {
	host := needs.Libvirt(b) // a libvirtd of the benchmark's own
	repo, _ := filepath.Abs("../..")
	guest := filepath.Join(repo, "_output", "guest")
	if _, err := os.Stat(filepath.Join(guest, "vmlinuz")); err != nil {
		b.Skipf("test guest missing: run hack/build-guest.sh")
	}
	rounds := apiservertesting.Env("VESSEL_BENCH_SNAPSHOTS", 5)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	work := b.TempDir()

	server := apiservertesting.Start(b, apiservertesting.Options{DisableControllers: true})
	client := server.Client
	srv := httptest.NewServer(http.FileServer(http.Dir(guest)))
	defer srv.Close()
	images := map[string]image{}
	for _, f := range []string{"vmlinuz", "initrd.img", "disk.img"} {
		data, err := os.ReadFile(filepath.Join(guest, f))
		if err != nil {
			b.Fatal(err)
		}
		s := sha256.Sum256(data)
		images[f] = image{srv.URL + "/" + f, hex.EncodeToString(s[:])}
	}

	lv := hypervisor.NewLibvirt(host.Socket())
	go lv.Run(ctx)
	if err := lv.WaitConnected(ctx); err != nil {
		b.Fatal(err)
	}
	hvName := "bench-snap-" + rand.String(5)
	defer cleanupDomains(lv, hvName)
	stateDir := filepath.Join(work, "state")
	a, err := agent.New(agent.Config{Client: client, Hypervisor: lv, HypervisorName: hvName, StateDir: stateDir,
		// The image server listens on loopback.
		Images: disks.CacheConfig{Egress: disks.Egress{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}}})
	if err != nil {
		b.Fatal(err)
	}
	agentCtx, stopAgent := context.WithCancel(ctx)
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(agentCtx) }()
	defer func() { stopAgent(); <-agentDone }()
	waitHypervisor(b, ctx, client, hvName)

	vm := startBenchVM(b, ctx, client, hvName, stateDir, images)
	// The scratch domain is stamped with a name of its own: under the
	// agent's name, its orphan collection would remove it.
	directName := hvName + "-direct"
	defer cleanupDomains(lv, directName)
	direct := startScratchDomain(b, ctx, guest, work, directName)
	defer direct.conn.Disconnect()

	ops := []string{"snapshot with memory", "restore with memory", "snapshot without memory", "restore without memory"}
	vessel := map[string][]time.Duration{}
	libvirt := map[string][]time.Duration{}
	for i := 0; i < rounds; i++ {
		for _, memory := range []bool{true, false} {
			suffix := map[bool]string{true: "with memory", false: "without memory"}[memory]
			snap, d := vesselSnapshot(b, ctx, client, vm, memory, i)
			vessel["snapshot "+suffix] = append(vessel["snapshot "+suffix], d)
			time.Sleep(time.Second) // let the guest run on from the snapshot
			vessel["restore "+suffix] = append(vessel["restore "+suffix], vesselRestore(b, ctx, client, vm, snap))
			deleteVesselSnapshot(b, ctx, client, snap)

			name := fmt.Sprintf("direct-%d-%t", i, memory)
			libvirt["snapshot "+suffix] = append(libvirt["snapshot "+suffix], direct.snapshot(b, name))
			time.Sleep(time.Second)
			libvirt["restore "+suffix] = append(libvirt["restore "+suffix], direct.restore(b, name, memory))
			direct.delete(b, name)
		}
	}

	fmt.Printf("\nSnapshots of a running %d MiB guest, %d rounds (median, min-max):\n", snapshotGuestMiB, rounds)
	fmt.Printf("  %-26s %-22s %-22s %s\n", "operation", "Vessel (object->Succeeded)", "libvirt direct", "ratio")
	for _, op := range ops {
		v, l := vessel[op], libvirt[op]
		ratio := float64(percentile(v, 50)) / float64(percentile(l, 50))
		fmt.Printf("  %-26s %-26s %-22s %.2fx\n", op, spread(v), spread(l), ratio)
		key := strings.ReplaceAll(op, " ", "-")
		b.ReportMetric(percentile(v, 50).Seconds()*1000, key+"-vessel-ms")
		b.ReportMetric(percentile(l, 50).Seconds()*1000, key+"-libvirt-ms")
	}
}

func spread(d []time.Duration) string {
	return fmt.Sprintf("%.2fs (%.2f-%.2f)", percentile(d, 50).Seconds(), percentile(d, 0).Seconds(), percentile(d, 100).Seconds())
}

// startBenchVM creates the 128 MiB guest (kernel, initrd, data disk overlay)
// and waits until it has booted.
func startBenchVM(b *testing.B, ctx context.Context, client versioned.Interface, hvName, stateDir string, images map[string]image) *v1alpha1.VirtualMachine {
	vms := client.VesselV1alpha1().VirtualMachines(namespace)
	src := func(f string) *v1alpha1.ImageSource {
		return &v1alpha1.ImageSource{URL: images[f].url, SHA256: images[f].sum}
	}
	name := "snap-" + rand.String(5)
	vm, err := vms.Create(ctx, &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: v1alpha1.VirtualMachineSpec{
			RunStrategy: v1alpha1.RunStrategyAlways,
			Memory:      resource.MustParse(fmt.Sprintf("%dMi", snapshotGuestMiB)),
			Kernel: &v1alpha1.KernelBoot{
				Kernel: v1alpha1.FileSource{Image: src("vmlinuz")}, Initrd: &v1alpha1.FileSource{Image: src("initrd.img")},
				Cmdline: "console=ttyS0 quiet",
			},
			Disks: []v1alpha1.Disk{{Name: "data", Image: src("disk.img")}},
			// User-mode NAT: this in-process agent has no managed network
			// (agent.Config.Network), so it refuses the default interface.
			Interfaces: []v1alpha1.Interface{{Name: "default", Type: v1alpha1.InterfaceTypeUser}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatalf("create VM: %v", err)
	}
	if _, err := vms.Bind(ctx, name, &v1alpha1.VirtualMachineBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Target: hvName}, metav1.CreateOptions{}); err != nil {
		b.Fatalf("bind VM: %v", err)
	}
	console := filepath.Join(stateDir, "vms", string(vm.UID), "console.log")
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		data, _ := os.ReadFile(console)
		return strings.Contains(string(data), "VESSEL-BOOT done"), nil
	})
	if err != nil {
		b.Fatalf("VM %s did not boot", name)
	}
	return vm
}

// watchUntil creates an object with create, then watches it (by name)
// until done, and returns the time from before the create to done.
func watchUntil(b *testing.B, ctx context.Context, what string, create func() (name, rv string, err error),
	watchFn func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error), done func(obj any) (bool, error)) (string, time.Duration) {
	t0 := time.Now()
	name, rv, err := create()
	if err != nil {
		b.Fatalf("create %s: %v", what, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	w, err := watchFn(wctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: rv})
	if err != nil {
		b.Fatalf("watch %s: %v", what, err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		ok, err := done(ev.Object)
		if err != nil {
			b.Fatalf("%s %s: %v", what, name, err)
		}
		if ok {
			return name, time.Since(t0)
		}
	}
	b.Fatalf("%s %s: watch ended before it finished", what, name)
	return "", 0
}

func vesselSnapshot(b *testing.B, ctx context.Context, client versioned.Interface, vm *v1alpha1.VirtualMachine, memory bool, round int) (string, time.Duration) {
	snaps := client.VesselV1alpha1().VirtualMachineSnapshots(namespace)
	return watchUntil(b, ctx, "snapshot", func() (string, string, error) {
		s, err := snaps.Create(ctx, &v1alpha1.VirtualMachineSnapshot{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d-%t", vm.Name, round, memory)},
			Spec:       v1alpha1.VirtualMachineSnapshotSpec{VirtualMachineName: vm.Name, IncludeMemory: &memory},
		}, metav1.CreateOptions{})
		if err != nil {
			return "", "", err
		}
		return s.Name, s.ResourceVersion, nil
	}, snaps.Watch, func(obj any) (bool, error) {
		s := obj.(*v1alpha1.VirtualMachineSnapshot)
		if s.Status.Phase == v1alpha1.SnapshotFailed {
			return false, fmt.Errorf("failed: %s", s.Status.Error)
		}
		return s.Status.Phase == v1alpha1.SnapshotSucceeded, nil
	})
}

func vesselRestore(b *testing.B, ctx context.Context, client versioned.Interface, vm *v1alpha1.VirtualMachine, snapshot string) time.Duration {
	restores := client.VesselV1alpha1().VirtualMachineRestores(namespace)
	_, d := watchUntil(b, ctx, "restore", func() (string, string, error) {
		r, err := restores.Create(ctx, &v1alpha1.VirtualMachineRestore{
			ObjectMeta: metav1.ObjectMeta{GenerateName: vm.Name + "-restore-"},
			Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: vm.Name, SnapshotName: snapshot},
		}, metav1.CreateOptions{})
		if err != nil {
			return "", "", err
		}
		return r.Name, r.ResourceVersion, nil
	}, restores.Watch, func(obj any) (bool, error) {
		r := obj.(*v1alpha1.VirtualMachineRestore)
		if r.Status.Phase == v1alpha1.SnapshotFailed {
			return false, fmt.Errorf("failed: %s", r.Status.Error)
		}
		return r.Status.Phase == v1alpha1.SnapshotSucceeded, nil
	})
	return d
}

func deleteVesselSnapshot(b *testing.B, ctx context.Context, client versioned.Interface, name string) {
	snaps := client.VesselV1alpha1().VirtualMachineSnapshots(namespace)
	if err := snaps.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		b.Fatalf("delete snapshot %s: %v", name, err)
	}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := snaps.Get(ctx, name, metav1.GetOptions{})
		return err != nil, nil
	})
	if err != nil {
		b.Fatalf("snapshot %s not deleted", name)
	}
}

// scratchDomain is the baseline: the same guest defined and driven with
// go-libvirt alone, on its own connection.
type scratchDomain struct {
	conn *golibvirt.Libvirt
	dom  golibvirt.Domain
}

func startScratchDomain(b *testing.B, ctx context.Context, guest, work, hvName string) *scratchDomain {
	dir := filepath.Join(work, "direct")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	overlay := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", filepath.Join(guest, "disk.img"), overlay).CombinedOutput(); err != nil {
		b.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	x, err := hypervisor.DomainXML(&hypervisor.DomainConfig{
		Owner:      hypervisor.Owner{Namespace: "bench", Name: "direct-" + rand.String(5), UID: uuid.NewString(), Hypervisor: hvName},
		CPUs:       1,
		MemoryKiB:  snapshotGuestMiB * 1024,
		Kernel:     filepath.Join(guest, "vmlinuz"),
		Initrd:     filepath.Join(guest, "initrd.img"),
		Cmdline:    "console=ttyS0 quiet",
		ConsoleLog: filepath.Join(dir, "console.log"),
		Disks:      []hypervisor.DiskConfig{{Name: "data", Path: overlay, Format: "qcow2"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	conn := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(needs.Libvirt(b).Socket())))
	if err := conn.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		b.Fatal(err)
	}
	dom, err := conn.DomainDefineXML(x)
	if err != nil {
		b.Fatalf("define scratch domain: %v", err)
	}
	if err := conn.DomainCreate(dom); err != nil {
		b.Fatalf("start scratch domain: %v", err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		data, _ := os.ReadFile(filepath.Join(dir, "console.log"))
		return strings.Contains(string(data), "VESSEL-BOOT done"), nil
	})
	if err != nil {
		b.Fatal("scratch domain did not boot")
	}
	return &scratchDomain{conn: conn, dom: dom}
}

func (s *scratchDomain) snapshot(b *testing.B, name string) time.Duration {
	t0 := time.Now()
	if _, err := s.conn.DomainSnapshotCreateXML(s.dom, "<domainsnapshot><name>"+name+"</name></domainsnapshot>", 0); err != nil {
		b.Fatalf("direct snapshot: %v", err)
	}
	return time.Since(t0)
}

// restore reverts as Vessel does: with memory into a running guest;
// without, with the guest off, then starts it.
func (s *scratchDomain) restore(b *testing.B, name string, memory bool) time.Duration {
	t0 := time.Now()
	snap, err := s.conn.DomainSnapshotLookupByName(s.dom, name, 0)
	if err != nil {
		b.Fatal(err)
	}
	if memory {
		if err := s.conn.DomainRevertToSnapshot(snap, uint32(golibvirt.DomainSnapshotRevertRunning)); err != nil {
			b.Fatalf("direct revert: %v", err)
		}
		return time.Since(t0)
	}
	if err := s.conn.DomainRevertToSnapshot(snap, uint32(golibvirt.DomainSnapshotRevertPaused)); err != nil {
		b.Fatalf("direct revert: %v", err)
	}
	if err := s.conn.DomainDestroy(s.dom); err != nil {
		b.Fatalf("direct destroy: %v", err)
	}
	if err := s.conn.DomainCreate(s.dom); err != nil {
		b.Fatalf("direct start: %v", err)
	}
	return time.Since(t0)
}

func (s *scratchDomain) delete(b *testing.B, name string) {
	snap, err := s.conn.DomainSnapshotLookupByName(s.dom, name, 0)
	if err == nil {
		err = s.conn.DomainSnapshotDelete(snap, 0)
	}
	if err != nil {
		b.Fatalf("direct snapshot delete: %v", err)
	}
}
