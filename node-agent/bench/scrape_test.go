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
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	"github.com/vessel-vm/vessel/node-agent/metrics"
)

// BenchmarkScrape is the cost of one Prometheus scrape of an agent running
// VESSEL_BENCH_VMS (20) real guests, against its baseline: the bare
// virConnectGetAllDomainStats call (go-libvirt, same stats groups) the
// scrape is built on. Both sides are real: the guests run under this
// host's libvirtd, the agent side is the agent's own metrics registry and
// handler reading the same libvirtd through hypervisor.Libvirt. The two are
// measured alternately (VESSEL_BENCH_ROUNDS rounds, 50) so load from
// elsewhere hits both alike; the ratio of the means is printed. Run once:
// -benchtime 1x.
func BenchmarkScrape(b *testing.B) {
	if _, err := os.Stat(hypervisor.DefaultSocket); err != nil {
		b.Skipf("libvirtd not running (%v): run hack/install-libvirt.sh", err)
	}
	repo, _ := filepath.Abs("../..")
	guest := filepath.Join(repo, "_output", "guest")
	if _, err := os.Stat(filepath.Join(guest, "vmlinuz")); err != nil {
		guest = "/var/lib/vessel/images/vessel-guest"
		if _, err := os.Stat(filepath.Join(guest, "vmlinuz")); err != nil {
			b.Skipf("test guest missing: run hack/build-guest.sh")
		}
	}
	n := apiservertesting.Env("VESSEL_BENCH_VMS", 20)
	rounds := apiservertesting.Env("VESSEL_BENCH_ROUNDS", 50)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	work := b.TempDir()
	hvName := "bench-scrape-" + uuid.NewString()[:8]

	conn := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(hypervisor.DefaultSocket)))
	if err := conn.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		b.Fatal(err)
	}
	defer conn.Disconnect()
	var vms []*v1alpha1.VirtualMachine
	var doms []golibvirt.Domain
	defer func() {
		for _, d := range doms {
			_ = conn.DomainDestroy(d)
			_ = conn.DomainUndefineFlags(d, golibvirt.DomainUndefineNvram)
		}
	}()
	for i := range n {
		uid := uuid.NewString()
		dir := filepath.Join(work, fmt.Sprint(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		overlay := filepath.Join(dir, "disk.qcow2")
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", filepath.Join(guest, "disk.img"), overlay).CombinedOutput(); err != nil {
			b.Fatalf("qemu-img create: %v\n%s", err, out)
		}
		name := fmt.Sprintf("vm-%02d", i)
		x, err := hypervisor.DomainXML(&hypervisor.DomainConfig{
			Owner:      hypervisor.Owner{Namespace: namespace, Name: name, UID: uid, Hypervisor: hvName},
			CPUs:       1,
			MemoryKiB:  guestMiB * 1024,
			Kernel:     filepath.Join(guest, "vmlinuz"),
			Initrd:     filepath.Join(guest, "initrd.img"),
			Cmdline:    "console=ttyS0 quiet",
			ConsoleLog: filepath.Join(dir, "console.log"),
			Disks:      []hypervisor.DiskConfig{{Name: "data", Path: overlay, Format: "qcow2"}},
			NICs:       []hypervisor.NICConfig{{Name: "default"}},
		})
		if err != nil {
			b.Fatal(err)
		}
		dom, err := conn.DomainDefineXML(x)
		if err != nil {
			b.Fatalf("define guest %d: %v", i, err)
		}
		doms = append(doms, dom)
		if err := conn.DomainCreate(dom); err != nil {
			b.Fatalf("start guest %d: %v", i, err)
		}
		vms = append(vms, &v1alpha1.VirtualMachine{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID(uid)},
			Spec:       v1alpha1.VirtualMachineSpec{NodeName: hvName},
		})
	}
	// Let the guests get past firmware and kernel start: the counters of a
	// booting guest are the same size as a booted one's.
	time.Sleep(10 * time.Second)

	lv := hypervisor.NewLibvirt(hypervisor.DefaultSocket)
	go lv.Run(ctx)
	if err := lv.WaitConnected(ctx); err != nil {
		b.Fatal(err)
	}
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, vm := range vms {
		if err := idx.Add(vm); err != nil {
			b.Fatal(err)
		}
	}
	reg := metrics.NewRegistry(metrics.Options{Hypervisor: hvName, Version: "bench"})
	if err := reg.AddVMs(lv, listers.NewVirtualMachineLister(idx)); err != nil {
		b.Fatal(err)
	}
	handler := reg.Handler()

	groups := uint32(golibvirt.DomainStatsState | golibvirt.DomainStatsCPUTotal | golibvirt.DomainStatsBalloon |
		golibvirt.DomainStatsVCPU | golibvirt.DomainStatsInterface | golibvirt.DomainStatsBlock)
	bulk := func() int {
		recs, err := conn.ConnectGetAllDomainStats(nil, groups, uint32(golibvirt.ConnectGetAllDomainsStatsNowait))
		if err != nil {
			b.Fatal(err)
		}
		return len(recs)
	}
	var lastBody int
	scrape := func() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, metrics.MetricsPath, nil)
		handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("scrape: HTTP %d: %s", rec.Code, rec.Body.String())
		}
		lastBody = rec.Body.Len()
	}
	domains := bulk()
	scrape() // warm up both
	var bulkT, scrapeT time.Duration
	var bulkAllocs, scrapeAllocs, bulkBytes, scrapeBytes uint64
	measure := func(f func(), d *time.Duration, allocs, bytes *uint64) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		f()
		*d += time.Since(start)
		runtime.ReadMemStats(&after)
		*allocs += after.Mallocs - before.Mallocs
		*bytes += after.TotalAlloc - before.TotalAlloc
	}
	b.ResetTimer()
	for range b.N {
		for range rounds {
			measure(func() { bulk() }, &bulkT, &bulkAllocs, &bulkBytes)
			measure(scrape, &scrapeT, &scrapeAllocs, &scrapeBytes)
		}
	}
	b.StopTimer()
	k := time.Duration(b.N * rounds)
	fk := uint64(b.N * rounds)
	b.ReportMetric(float64((scrapeT / k).Microseconds()), "µs/scrape")
	b.ReportMetric(float64((bulkT / k).Microseconds()), "µs/bulk-call")
	b.ReportMetric(float64(scrapeT)/float64(bulkT), "scrape/bulk")
	b.Logf("%d guests of this benchmark (%d domains on libvirtd), %d rounds", n, domains, b.N*rounds)
	b.Logf("bare virConnectGetAllDomainStats: %v, %d allocs, %d KiB per call", bulkT/k, bulkAllocs/fk, bulkBytes/fk/1024)
	b.Logf("agent scrape (/metrics, %d KiB of text): %v, %d allocs, %d KiB per scrape", lastBody/1024, scrapeT/k, scrapeAllocs/fk, scrapeBytes/fk/1024)
	b.Logf("ratio scrape/bulk: time %.2fx, allocations %.2fx, bytes %.2fx",
		float64(scrapeT)/float64(bulkT), float64(scrapeAllocs)/float64(bulkAllocs), float64(scrapeBytes)/float64(bulkBytes))
}
