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

package clone

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
)

// benchVM is the guest every measurement starts: it prints a line ten
// times a second, so a guest resumed from memory says so within 0.1 s and
// "first console output" means the same for all three.
const benchVM = `apiVersion: vessel.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  runStrategy: Always
  cpus: 1
  memory: 128Mi
  terminationGracePeriodSeconds: 0
  kernel:
    kernel: {hostPath: {path: %[3]s/vmlinuz}}
    initrd: {hostPath: {path: %[3]s/initrd.img}}
    cmdline: console=ttyS0 quiet
  disks:
  - name: scratch
    blank: {size: 64Mi}
  - name: seed
    cloudInit:
      userData: |
        #!/bin/sh
        ( i=0; while :; do i=$((i+1)); echo "T $i"; sleep 0.1; done ) >/dev/console 2>&1 &
`

// BenchmarkClone measures create -> first console output of the guest for
// (a) a cold boot of the test guest, (b) a memory clone of a snapshot of
// it, (b') a memory clone of the running VM itself (its memory saved at
// the clone), and (c) a VM taken from a warm pool (kubectl scale +1),
// VESSEL_BENCH_CLONES rounds (default 5), and prints p50/p95 and their
// ratio to (a). "Create" is the API call that asks for the VM (create VM,
// create VirtualMachineClone, scale the pool; all three from this
// process's client); "first console output" is
// the first byte the guest writes to its console after it, as virtlogd
// records it.
//
// Each round measures the four one after the other, one VM at a time,
// after the pool has its warm clones again: a machine whose load changes
// during the run (other builds, other tests) slows all four alike, so the
// ratios hold even where the absolute times do not.
//
//	make bench-clone
//	VESSEL_E2E=1 go test -run '^$' -bench Clone -benchtime 1x -timeout 60m ./e2e/clone/
func BenchmarkClone(b *testing.B) {
	e := framework.Require(b)
	guest := guestDir()
	n := 5
	if v, err := strconv.Atoi(os.Getenv("VESSEL_BENCH_CLONES")); err == nil && v > 0 {
		n = v
	}
	ns := "bench-clone-" + utilrand.String(5)
	e.MustKubectl(b, "admin", "create", "namespace", ns)
	b.Cleanup(func() { _, _ = e.Kubectl(b, "admin", "delete", "namespace", ns, "--wait=false") })
	apply := func(manifest string) {
		path := b.TempDir() + "/m.yaml"
		if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
			b.Fatal(err)
		}
		e.MustKubectl(b, "admin", "apply", "-f", path)
	}
	vms := e.Admin.VesselV1alpha1().VirtualMachines(ns)
	ctx := context.Background()
	steps, err := watchMilestones(e.Admin, ns)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(steps.stop)

	// The source of the clones, a snapshot of it, and a pool of warm
	// clones of the snapshot.
	// The snapshot is of a booted guest, counting: one taken at its first
	// output would hold a guest mid-boot (DHCP, init), and every clone of
	// it would finish that boot first, with the old MAC's DHCP lease gone
	// and no identity handler running yet.
	apply(fmt.Sprintf(benchVM, ns, "source", guest))
	waitCounting(b, e, ns, "source")
	e.MustKubectl(b, "admin", "vm", "-n", ns, "snapshot", "source", "golden", "--wait")
	apply(fmt.Sprintf(`apiVersion: vessel.dev/v1alpha1
kind: VirtualMachinePool
metadata: {name: web, namespace: %s}
spec:
  replicas: 0
  template: {}
  warm: {snapshotName: golden, ready: 2}
`, ns))
	pools := e.Admin.VesselV1alpha1().VirtualMachinePools(ns)

	// A cold boot is created through the API like a clone is: with kubectl
	// apply it would also count kubectl's own start (about 0.3 s), which
	// the clones do not pay.
	cold := func(name string) time.Duration {
		var v v1alpha1.VirtualMachine
		if err := yaml.UnmarshalStrict([]byte(fmt.Sprintf(benchVM, ns, name, guest)), &v); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := vms.Create(ctx, &v, metav1.CreateOptions{}); err != nil {
			b.Fatalf("create %s: %v", name, err)
		}
		d := firstOutput(b, e, ns, name, start)
		fmt.Printf("  %s: %s, console %.2fs\n", name, steps.report(name, start), d.Seconds())
		deleteVM(b, e, ns, name)
		return d
	}
	clone := func(name string, src v1alpha1.CloneSource) time.Duration {
		memory := true
		start := time.Now()
		_, err := e.Admin.VesselV1alpha1().VirtualMachineClones(ns).Create(ctx, &v1alpha1.VirtualMachineClone{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       v1alpha1.VirtualMachineCloneSpec{Source: src, Target: v1alpha1.CloneTarget{Name: name}, Memory: &memory},
		}, metav1.CreateOptions{})
		if err != nil {
			b.Fatalf("clone %s: %v", name, err)
		}
		d := firstOutput(b, e, ns, name, start)
		fmt.Printf("  %s: %s, console %.2fs\n", name, steps.report(name, start), d.Seconds())
		deleteVM(b, e, ns, name)
		return d
	}
	// take scales the pool from 0 to 1 and returns how long until one of
	// its warm VMs printed something; then it scales the pool back to 0,
	// which deletes the VM it handed out, so every round runs with the
	// same guests on the machine (the source, two warm clones).
	take := func() time.Duration {
		ready, err := vms.List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelPoolMember + "=" + v1alpha1.PoolMemberWarm})
		if err != nil {
			b.Fatal(err)
		}
		sizes := map[string]int{}
		for _, vm := range ready.Items {
			sizes[vm.Name] = len(e.ConsoleLog(&vm))
		}
		start := time.Now()
		scale := func(replicas int) {
			if _, err := pools.Patch(ctx, "web", types.MergePatchType, []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)), metav1.PatchOptions{}); err != nil {
				b.Fatalf("scale the pool: %v", err)
			}
		}
		scale(1)
		defer scale(0)
		var took time.Duration
		err = wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
			for _, vm := range ready.Items {
				if len(e.ConsoleLog(&vm)) > sizes[vm.Name] {
					took = time.Since(start)
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			b.Fatalf("no warm VM printed anything after scaling up")
		}
		return took
	}

	var coldT, fromSnapshot, fromVM, warm []time.Duration
	for i := range n {
		// The pool's background work (deleting the VM the last round
		// took, restoring the warm clone that replaces it) is done before
		// anything is measured.
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
			p, err := pools.Get(ctx, "web", metav1.GetOptions{})
			if err != nil || p.Status.ReadyWarmReplicas != 2 || p.Status.Replicas != 0 {
				return false, nil
			}
			members, err := vms.List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelPoolMember})
			return err == nil && len(members.Items) == 2, nil
		})
		if err != nil {
			b.Fatalf("the pool never had 2 ready warm clones and nothing else")
		}
		coldT = append(coldT, cold(fmt.Sprintf("cold-%d", i)))
		fromSnapshot = append(fromSnapshot, clone(fmt.Sprintf("snap-%d", i), v1alpha1.CloneSource{SnapshotName: "golden"}))
		fromVM = append(fromVM, clone(fmt.Sprintf("live-%d", i), v1alpha1.CloneSource{VirtualMachineName: "source"}))
		warm = append(warm, take())
		fmt.Printf("round %d: cold %.2fs, clone of snapshot %.2fs, clone of VM %.2fs, warm %.2fs\n", i+1,
			coldT[i].Seconds(), fromSnapshot[i].Seconds(), fromVM[i].Seconds(), warm[i].Seconds())
	}

	a50, a95 := percentiles(coldT)
	fmt.Printf("\ncreate -> first console output, n=%d each, one VM at a time, the four kinds interleaved\n", n)
	fmt.Printf("%-44s %8s %8s   %s\n", "", "p50", "p95", "ratio to (a): p50, p95")
	row := func(name string, d []time.Duration) {
		p50, p95 := percentiles(d)
		fmt.Printf("%-44s %7.2fs %7.2fs   %.2fx, %.2fx\n", name, p50.Seconds(), p95.Seconds(), p50.Seconds()/a50.Seconds(), p95.Seconds()/a95.Seconds())
	}
	row("(a) cold boot", coldT)
	row("(b) memory clone of a snapshot", fromSnapshot)
	row("(b') memory clone of the running VM", fromVM)
	row("(c) VM from a warm pool (scale +1)", warm)
	fmt.Println()
	b.ReportMetric(a50.Seconds(), "s-cold-p50")
	s50, _ := percentiles(fromSnapshot)
	w50, _ := percentiles(warm)
	b.ReportMetric(s50.Seconds()/a50.Seconds(), "clone/cold-p50")
	b.ReportMetric(w50.Seconds()/a50.Seconds(), "warm/cold-p50")
}

// firstOutput waits until the VM exists and its guest wrote to its console,
// and returns the time since start.
func firstOutput(b *testing.B, e *framework.Env, ns, name string, start time.Time) time.Duration {
	b.Helper()
	var vm *v1alpha1.VirtualMachine
	var took time.Duration
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		if vm == nil {
			got, err := e.Admin.VesselV1alpha1().VirtualMachines(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			vm = got
		}
		if strings.TrimSpace(e.ConsoleLog(vm)) != "" {
			took = time.Since(start)
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		b.Fatalf("VM %s/%s printed nothing within 3 minutes", ns, name)
	}
	return took
}

// waitCounting waits until the bench guest has counted to 3 on its console.
func waitCounting(b *testing.B, e *framework.Env, ns, name string) {
	b.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		vm, err := e.Admin.VesselV1alpha1().VirtualMachines(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		log := e.ConsoleLog(vm)
		return (strings.Contains(log, "T 3\r") || strings.Contains(log, "T 3\n")), nil
	})
	if err != nil {
		b.Fatalf("VM %s/%s did not count to 3 within 3 minutes", ns, name)
	}
}

func deleteVM(b *testing.B, e *framework.Env, ns, name string) {
	b.Helper()
	e.MustKubectl(b, "admin", "-n", ns, "delete", "vm", name, "--timeout=120s")
}

func percentiles(d []time.Duration) (p50, p95 time.Duration) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0, 0
	}
	at := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.5) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return at(0.5), at(0.95)
}
