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
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/launcher"
)

// BenchmarkMigration moves an idle guest back and forth between the two
// hypervisors VESSEL_BENCH_MIGRATIONS times (default 5), once through
// Vessel (a VirtualMachineMigration, as `kubectl vm migrate` makes it) and
// once directly with libvirt between the same two libvirtds (a domain of
// the same size defined by hand, the same peer-to-peer call with disk copy,
// straight over the fabric), and prints the p50/p95 of the migration time
// and the downtime, as ratios; then the memory pages a migration sends for
// the idle guest and for one that rewrites 32 MiB of memory in a loop.
//
// Vessel's time is create of the migration -> Succeeded seen through the
// API; libvirt's is the one call. The rounds alternate, so load that
// changes during the run slows both alike. Unlike e2e/migration's tests,
// the agents' bandwidth is not capped.
//
//	make bench-migration
//	VESSEL_E2E=1 go test -run '^$' -bench Migration -benchtime 1x -timeout 30m ./e2e/migration/
func BenchmarkMigration(b *testing.B) {
	e := framework.RequireWith(b, framework.Config{})
	if len(e.Hypervisors) < 2 {
		b.Fatalf("need two hypervisors, have %d", len(e.Hypervisors))
	}
	n := 5
	if v, err := strconv.Atoi(os.Getenv("VESSEL_BENCH_MIGRATIONS")); err == nil && v > 0 {
		n = v
	}
	ns := "bench-migration-" + utilrand.String(5)
	e.MustKubectl(b, "admin", "create", "namespace", ns)
	b.Cleanup(func() { _, _ = e.Kubectl(b, "admin", "delete", "namespace", ns, "--wait=false") })

	idle := benchVM(b, e, ns, "idle", "")
	direct := newDirectDomain(b, e.Hypervisors[0], e.Hypervisors[1])

	var vessel, vesselDown, lv, lvDown []time.Duration
	var idlePages []int64
	for i := range n {
		d, m := migrateThroughVessel(b, e, idle)
		vessel, vesselDown = append(vessel, d), append(vesselDown, m.Status.Downtime.Duration)
		idlePages = append(idlePages, m.Status.MemoryPagesTransferred)
		d, down := direct.migrate(b)
		lv, lvDown = append(lv, d), append(lvDown, down)
		fmt.Printf("round %d: Vessel %.2fs (downtime %dms, %d pages), libvirt %.2fs (downtime %dms)\n", i+1,
			vessel[i].Seconds(), vesselDown[i].Milliseconds(), idlePages[i], lv[i].Seconds(), lvDown[i].Milliseconds())
	}

	// A guest that keeps dirtying its memory makes the copy send pages
	// again.
	busy := benchVM(b, e, ns, "busy", "(while :; do yes vessel-busy-guest | head -c 33554432 >/tmp/busy; done) &\n")
	var busyPages []int64
	var busyTime []time.Duration
	for range min(n, 3) {
		d, m := migrateThroughVessel(b, e, busy)
		busyTime, busyPages = append(busyTime, d), append(busyPages, m.Status.MemoryPagesTransferred)
	}

	p50, p95 := percentiles(lv)
	fmt.Printf("\nlive migration with disk copy between two libvirtds, 128 MiB TCG guest, n=%d each, rounds alternating\n", n)
	fmt.Printf("%-40s %8s %8s   %s\n", "", "p50", "p95", "ratio to libvirt: p50, p95")
	row := func(name string, d []time.Duration, b50, b95 time.Duration) {
		s50, s95 := percentiles(d)
		fmt.Printf("%-40s %7.2fs %7.2fs   %.2fx, %.2fx\n", name, s50.Seconds(), s95.Seconds(), s50.Seconds()/b50.Seconds(), s95.Seconds()/b95.Seconds())
	}
	row("migration time, libvirt directly", lv, p50, p95)
	row("migration time, Vessel (kubectl vm migrate)", vessel, p50, p95)
	d50, d95 := percentiles(lvDown)
	row("downtime, libvirt directly", lvDown, d50, d95)
	row("downtime, Vessel", vesselDown, d50, d95)
	fmt.Printf("\nmemory pages sent (4 KiB), p50: idle guest %d, busy guest %d (%d rounds, migration time p50 %.2fs)\n\n",
		median(idlePages), median(busyPages), len(busyPages), func() float64 { s, _ := percentiles(busyTime); return s.Seconds() }())
	v50, _ := percentiles(vessel)
	b.ReportMetric(v50.Seconds()/p50.Seconds(), "vessel/libvirt-p50")
}

// benchVM starts the test guest with a 16 MiB data disk, running script
// from its user data, and waits until it runs.
func benchVM(b *testing.B, e *framework.Env, ns, name, script string) *v1alpha1.VirtualMachine {
	b.Helper()
	vm := framework.GuestVM(ns, name)
	vm.Spec.Disks = []v1alpha1.Disk{{Name: "data", Blank: &v1alpha1.BlankSource{Size: resource.MustParse("16Mi")}}}
	if script != "" {
		vm.Spec.Disks = append(vm.Spec.Disks, v1alpha1.Disk{Name: "seed", CloudInit: &v1alpha1.CloudInitSource{UserData: "#!/bin/sh\n" + script}})
	}
	if _, err := e.Admin.VesselV1alpha1().VirtualMachines(ns).Create(context.Background(), vm, metav1.CreateOptions{}); err != nil {
		b.Fatalf("create VM %s: %v", name, err)
	}
	got := e.WaitPhase(b, ns, name, v1alpha1.VirtualMachineRunning)
	e.WaitLog(b, got, "VESSEL-BOOT done")
	return got
}

// migrateThroughVessel moves vm to the other hypervisor and returns the
// time from the migration's create to its Succeeded status.
func migrateThroughVessel(b *testing.B, e *framework.Env, vm *v1alpha1.VirtualMachine) (time.Duration, *v1alpha1.VirtualMachineMigration) {
	b.Helper()
	migrations := e.Admin.VesselV1alpha1().VirtualMachineMigrations(vm.Namespace)
	start := time.Now()
	m, err := migrations.Create(context.Background(), &v1alpha1.VirtualMachineMigration{
		ObjectMeta: metav1.ObjectMeta{GenerateName: vm.Name + "-"},
		Spec:       v1alpha1.VirtualMachineMigrationSpec{VirtualMachineName: vm.Name},
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatalf("create migration of %s: %v", vm.Name, err)
	}
	var took time.Duration
	err = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		cur, err := migrations.Get(ctx, m.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		m = cur
		took = time.Since(start)
		return cur.Status.Phase == v1alpha1.MigrationSucceeded || cur.Status.Phase == v1alpha1.MigrationFailed, nil
	})
	if err != nil || m.Status.Phase != v1alpha1.MigrationSucceeded || m.Status.Downtime == nil {
		b.Fatalf("migration %s: %v; status %+v", m.Name, err, m.Status)
	}
	// Bound to the target again before the next round asks to move it.
	e.WaitVM(b, vm.Namespace, vm.Name, time.Minute, "bound to "+m.Status.Target, func(cur *v1alpha1.VirtualMachine) bool {
		return cur.Spec.NodeName == m.Status.Target && cur.Status.Phase == v1alpha1.VirtualMachineRunning
	})
	return took, m
}

// directDomain is a guest libvirt runs without Vessel (agents leave
// domains without Vessel's metadata alone), migrated between the two
// libvirtds with the call Vessel's source agent makes, over the fabric.
type directDomain struct {
	name  string
	uuid  string
	hvs   [2]launcher.Hypervisor
	disks [2]string
	at    int // index in hvs of where it runs
}

func newDirectDomain(b *testing.B, a, c launcher.Hypervisor) *directDomain {
	b.Helper()
	d := &directDomain{name: "bench-direct-" + utilrand.String(5), uuid: string(uuid.NewUUID()), hvs: [2]launcher.Hypervisor{a, c}}
	for i, hv := range d.hvs {
		dir := filepath.Join(hv.Dir, "bench-direct")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.Fatal(err)
		}
		d.disks[i] = filepath.Join(dir, d.name+".qcow2")
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", d.disks[i], "16M").CombinedOutput(); err != nil {
			b.Fatalf("qemu-img create: %v: %s", err, out)
		}
	}
	b.Cleanup(func() {
		for i, hv := range d.hvs {
			_ = exec.Command("virsh", "-c", hv.URI(), "destroy", d.name).Run()
			_ = exec.Command("virsh", "-c", hv.URI(), "undefine", d.name).Run()
			_ = os.Remove(d.disks[i])
		}
	})
	xmlPath := filepath.Join(b.TempDir(), "domain.xml")
	if err := os.WriteFile(xmlPath, []byte(d.xml(0)), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, args := range [][]string{{"define", xmlPath}, {"start", d.name}} {
		if out, err := exec.Command("virsh", append([]string{"-c", a.URI()}, args...)...).CombinedOutput(); err != nil {
			b.Fatalf("virsh %v on %s: %v: %s", args, a.Name, err, out)
		}
	}
	time.Sleep(10 * time.Second) // past the kernel's boot, as the Vessel guest is
	return d
}

// xml is the domain's definition with its disk on hypervisor i.
func (d *directDomain) xml(i int) string {
	return fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <uuid>%s</uuid>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%s</kernel><initrd>%s</initrd><cmdline>console=ttyS0 quiet</cmdline></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/><target dev='vda' bus='virtio'/></disk>
    <serial type='pty'/>
  </devices>
</domain>`, d.name, d.uuid, filepath.Join(framework.GuestDir, "vmlinuz"), filepath.Join(framework.GuestDir, "initrd.img"), d.disks[i])
}

// migrate moves the domain to the other hypervisor and returns the call's
// time and libvirt's downtime.
func (d *directDomain) migrate(b *testing.B) (time.Duration, time.Duration) {
	b.Helper()
	from, to := d.at, 1-d.at
	c := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(d.hvs[from].Socket()), dialers.WithLocalTimeout(5*time.Second)))
	if err := c.Connect(); err != nil {
		b.Fatalf("connect to %s's libvirtd: %v", d.hvs[from].Name, err)
	}
	defer c.Disconnect()
	dom, err := c.DomainLookupByName(d.name)
	if err != nil {
		b.Fatal(err)
	}
	ip := d.hvs[to].Address.Addr().String()
	params := []golibvirt.TypedParam{
		{Field: "migrate_uri", Value: *golibvirt.NewTypedParamValueString("tcp://" + ip + ":49300")},
		{Field: "disks_uri", Value: *golibvirt.NewTypedParamValueString("tcp://" + ip + ":49301")},
		{Field: "listen_address", Value: *golibvirt.NewTypedParamValueString(ip)},
		{Field: "destination_xml", Value: *golibvirt.NewTypedParamValueString(d.xml(to))},
	}
	flags := golibvirt.MigrateLive | golibvirt.MigratePeer2peer | golibvirt.MigratePersistDest | golibvirt.MigrateNonSharedDisk
	start := time.Now()
	if _, err := c.DomainMigratePerform3Params(dom, golibvirt.OptString{"qemu+unix:///system?socket=" + d.hvs[to].Socket()}, params, nil, flags); err != nil {
		b.Fatalf("migrate %s from %s to %s: %v", d.name, d.hvs[from].Name, d.hvs[to].Name, err)
	}
	took := time.Since(start)
	_, stats, err := c.DomainGetJobStats(dom, golibvirt.DomainJobStatsCompleted)
	if err != nil {
		b.Fatal(err)
	}
	var down time.Duration
	for _, p := range stats {
		if p.Field == "downtime" {
			if v, ok := p.Value.I.(uint64); ok {
				down = time.Duration(v) * time.Millisecond
			}
		}
	}
	d.at = to
	return took, down
}

func percentiles(d []time.Duration) (p50, p95 time.Duration) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)/2], s[(len(s)*95+99)/100-1]
}

func median(v []int64) int64 {
	s := append([]int64(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)/2]
}
