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

package metrics

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/launcher"
)

func TestMain(m *testing.M) { framework.Main(m) }

// scraperUser is who Prometheus is on the local system: manifests/local
// binds it to vessel.dev:metrics-scraper.
const scraperUser = "vessel-prometheus"

// busyVM is the test guest with a blank disk, spinning `yes`, writing
// 1 MiB to its disk every second and asking the managed network's DHCP
// server for its lease again every second or so (a few packets each way:
// the one conversation a guest may have with its hypervisor).
func busyVM(namespace, name string) *v1alpha1.VirtualMachine {
	vm := framework.GuestVM(namespace, name)
	vm.Spec.Disks = []v1alpha1.Disk{
		{Name: "scratch", Blank: &v1alpha1.BlankSource{Size: resource.MustParse("64Mi")}},
		{Name: "seed", CloudInit: &v1alpha1.CloudInitSource{UserData: `#!/bin/sh
yes >/dev/null &
while true; do
	dd if=/dev/zero of=/dev/vda bs=64k count=16 conv=fsync
	sleep 1
done >/dev/null 2>&1 &
while true; do
	udhcpc -i eth0 -s /bin/true -n -q -t 2 -T 1 -f
	sleep 1
done >/dev/null 2>&1 &
`}},
	}
	return vm
}

// top runs `kubectl vm top` as user and returns the CPU (millicores) and
// memory (MiB) printed for each VM, by name.
func top(t *testing.T, e *framework.Env, user string, args ...string) (map[string][2]int64, string, error) {
	t.Helper()
	out, err := e.Kubectl(t, user, append([]string{"vm", "top"}, args...)...)
	if err != nil {
		return nil, out, err
	}
	rows := map[string][2]int64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] == "NAME" || f[0] == "NAMESPACE" {
			continue
		}
		// With -A the namespace comes first.
		name, cpu, mem := f[len(f)-3], f[len(f)-2], f[len(f)-1]
		milli, err1 := strconv.ParseInt(strings.TrimSuffix(cpu, "m"), 10, 64)
		mib, err2 := strconv.ParseInt(strings.TrimSuffix(mem, "Mi"), 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		rows[name] = [2]int64{milli, mib}
	}
	return rows, out, nil
}

// waitTop polls `kubectl vm top` until ok accepts its rows.
func waitTop(t *testing.T, e *framework.Env, user string, timeout time.Duration, what string, ok func(map[string][2]int64) bool, args ...string) map[string][2]int64 {
	t.Helper()
	var rows map[string][2]int64
	var out string
	var err error
	pollErr := wait.PollUntilContextTimeout(context.Background(), 2*time.Second, timeout, true, func(context.Context) (bool, error) {
		rows, out, err = top(t, e, user, args...)
		return err == nil && ok(rows), nil
	})
	if pollErr != nil {
		t.Fatalf("kubectl vm top %s as %s: %s within %v; last output (err %v):\n%s", strings.Join(args, " "), user, what, timeout, err, out)
	}
	return rows
}

func TestMetrics(t *testing.T) {
	start := time.Now()
	e := framework.RequireWith(t, framework.Config{
		// Two reads 3 s apart give a usage; 15 s (the default) works too,
		// only slower.
		VesselAPIServerArgs: []string{"--usage-resolution=3s"},
		// One agent serves both guests, so one scrape sees them both.
		Hypervisors: 1,
	})
	c := e.Cluster
	apiserverURL := c.VesselAPIServerURL() + "/metrics"
	promCert, err := c.PKI.EnsureClientCert(scraperUser, scraperUser, nil)
	if err != nil {
		t.Fatal(err)
	}
	asPrometheus := newScraper(t, c.PKI.AgentCA.CertFile, &promCert)

	busy := busyVM("team-a", "busy")
	if _, err := e.Admin.VesselV1alpha1().VirtualMachines("team-a").Create(context.Background(), busy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	busyVM := e.RunningVM(t, "team-a", "busy")
	idleVM := e.RunningVM(t, "team-b", "idle")
	hv := busyVM.Spec.NodeName
	agentURL := fmt.Sprintf("https://127.0.0.1:%d/metrics", c.Ports.AgentMetrics[hv])
	t.Logf("two guests running after %v", time.Since(start).Round(time.Second))

	t.Run("kubectl vm top: busy above half a core, idle near 0", func(t *testing.T) {
		rows := waitTop(t, e, "alice", 90*time.Second, "busy at 500m or more", func(r map[string][2]int64) bool {
			return r["busy"][0] >= 500
		}, "-n", "team-a")
		t.Logf("alice: busy uses %dm, %dMi", rows["busy"][0], rows["busy"][1])
		// A guest that has just booted is not idle yet: TCG burns CPU
		// for its boot, which the first windows of usage still show.
		rows = waitTop(t, e, "bob", 90*time.Second, "the idle VM near 0 (below 200m)", func(r map[string][2]int64) bool {
			idle, ok := r["idle"]
			return ok && idle[0] < 200
		}, "-n", "team-b")
		if mem := rows["idle"][1]; mem < 16 {
			t.Errorf("the idle guest's QEMU has %d MiB resident; want a real process' memory", mem)
		}
		t.Logf("bob: idle uses %dm, %dMi", rows["idle"][0], rows["idle"][1])
		out := e.MustKubectl(t, "admin", "vm", "top", "-A", "--sort-by", "cpu")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 3 || !strings.HasPrefix(lines[0], "NAMESPACE") || !strings.HasPrefix(lines[1], "team-a") || !strings.Contains(lines[1], "busy") {
			t.Errorf("kubectl vm top -A --sort-by cpu does not list busy first:\n%s", out)
		}
		if _, out, err := top(t, e, "admin", "busy", "-n", "team-a"); err != nil || !strings.Contains(out, "busy") {
			t.Errorf("kubectl vm top busy -n team-a: %v\n%s", err, out)
		}
	})

	t.Run("bob reads team-b's usage, is refused team-a's", func(t *testing.T) {
		for _, args := range [][]string{{"-n", "team-a"}, {"busy", "-n", "team-a"}, {"-A"}} {
			_, out, err := top(t, e, "bob", args...)
			if err == nil || !strings.Contains(out, "not allowed") {
				t.Errorf("bob: kubectl vm top %s: err %v, want a refusal; output:\n%s", strings.Join(args, " "), err, out)
			}
		}
		out, err := e.Kubectl(t, "bob", "get", "--raw", "/apis/metrics.vessel.dev/v1alpha1/namespaces/team-b/virtualmachines/idle")
		if err != nil || !strings.Contains(out, `"cpu"`) {
			t.Errorf("bob cannot get team-b/idle's usage through the API: %v\n%s", err, out)
		}
	})

	t.Run("the agent's metrics endpoint refuses unauthenticated and unauthorized scrapes", func(t *testing.T) {
		anonymous := newScraper(t, c.PKI.AgentCA.CertFile, nil)
		if code, body := anonymous.get(t, agentURL); code != http.StatusUnauthorized && code != http.StatusForbidden {
			t.Errorf("anonymous scrape of the agent: HTTP %d, want 401 or 403:\n%.300s", code, body)
		}
		bob := c.PKI.Users["bob"]
		if code, body := newScraper(t, c.PKI.AgentCA.CertFile, &bob).get(t, agentURL); code != http.StatusForbidden {
			t.Errorf("bob's scrape of the agent: HTTP %d, want 403:\n%.300s", code, body)
		}
		fams, _ := asPrometheus.families(t, agentURL)
		for _, vm := range []*v1alpha1.VirtualMachine{busyVM, idleVM} {
			l := labelsOf(vm.Namespace, vm.Name)
			l["uid"], l["hypervisor"] = string(vm.UID), vm.Spec.NodeName
			mustValue(t, fams, "vessel_vm_cpu_seconds_total", l)
			mustValue(t, fams, "vessel_vm_memory_rss_bytes", l)
		}
		if up := mustValue(t, fams, "vessel_agent_libvirt_up", nil); up != 1 {
			t.Errorf("vessel_agent_libvirt_up = %v, want 1", up)
		}
	})

	t.Run("network counters move when the guest transfers data", func(t *testing.T) {
		busy := labelsOf("team-a", "busy")
		before, _ := asPrometheus.families(t, agentURL)
		time.Sleep(5 * time.Second)
		after, _ := asPrometheus.families(t, agentURL)
		for _, name := range []string{
			"vessel_vm_network_transmit_bytes_total", "vessel_vm_network_transmit_packets_total",
			"vessel_vm_network_receive_bytes_total", "vessel_vm_network_receive_packets_total",
		} {
			b, a := mustValue(t, before, name, busy), mustValue(t, after, name, busy)
			if a <= b {
				t.Errorf("%s of busy's interface did not move in 5 s of DHCP exchanges: %v then %v", name, b, a)
			}
			t.Logf("%s: %v then %v", name, b, a)
		}
	})
	t.Run("disk counters move when the guest writes", func(t *testing.T) {
		diskLabels := labelsOf("team-a", "busy")
		diskLabels["disk"] = "vda"
		before, _ := asPrometheus.families(t, agentURL)
		time.Sleep(5 * time.Second)
		after, _ := asPrometheus.families(t, agentURL)
		for _, name := range []string{"vessel_vm_disk_written_bytes_total", "vessel_vm_disk_writes_total", "vessel_vm_disk_write_time_seconds_total", "vessel_vm_disk_flushes_total"} {
			b, a := mustValue(t, before, name, diskLabels), mustValue(t, after, name, diskLabels)
			if a <= b {
				t.Errorf("%s of busy's vda did not move in 5 s of writing: %v then %v", name, b, a)
			}
		}
		idle := labelsOf("team-b", "idle")
		idle["disk"] = "vda"
		if _, ok := value(after, "vessel_vm_disk_written_bytes_total", idle); ok {
			t.Error("the idle guest, which has no disk, reports disk vda")
		}
	})

	t.Run("promtool check metrics passes on the agent and the vessel-apiserver", func(t *testing.T) {
		promtool := toolPath(t, "promtool")
		_, agentBody := asPrometheus.families(t, agentURL)
		checkMetrics(t, promtool, "agent", agentBody)
		// kube-apiserver's library metrics are upstream's business: lint
		// the vessel-apiserver's own (vessel_*) only.
		asPromToAPIServer := newScraper(t, c.PKI.ClusterCA.CertFile, &promCert)
		_, apiBody := asPromToAPIServer.families(t, apiserverURL)
		var own strings.Builder
		for _, line := range strings.SplitAfter(string(apiBody), "\n") {
			if strings.HasPrefix(line, "vessel_") || strings.HasPrefix(line, "# HELP vessel_") || strings.HasPrefix(line, "# TYPE vessel_") {
				own.WriteString(line)
			}
		}
		if !strings.Contains(own.String(), "vessel_usage_agent_scrapes_total") {
			t.Errorf("the vessel-apiserver does not serve vessel_usage_agent_scrapes_total:\n%.2000s", own.String())
		}
		checkMetrics(t, promtool, "vessel-apiserver", []byte(own.String()))
	})

	t.Run("a real Prometheus sees busy above half a core and idle near 0", func(t *testing.T) {
		runPrometheus(t, e, promCert, agentURL, apiserverURL)
	})

	t.Run("an agent restart keeps the counters monotonic", func(t *testing.T) {
		l := labelsOf("team-a", "busy")
		before := mustValue(t, fst(asPrometheus.families(t, agentURL)), "vessel_vm_cpu_seconds_total", l)
		if err := c.KillAgent(hv); err != nil {
			t.Fatal(err)
		}
		if err := c.RestartAgent(context.Background(), hv); err != nil {
			t.Fatal(err)
		}
		var after float64
		err := wait.PollUntilContextTimeout(context.Background(), time.Second, time.Minute, true, func(context.Context) (bool, error) {
			// The launcher waits for the new agent's ports, but a scrape
			// may still race its start: wait through refusals.
			code, _, err := asPrometheus.try(agentURL)
			if err != nil || code != http.StatusOK {
				return false, nil
			}
			v, ok := value(fst(asPrometheus.families(t, agentURL)), "vessel_vm_cpu_seconds_total", l)
			after = v
			return ok, nil
		})
		if err != nil {
			t.Fatalf("busy's CPU counter not served again after the agent restarted: %v", err)
		}
		if after < before {
			t.Errorf("vessel_vm_cpu_seconds_total went back across an agent restart: %v then %v", before, after)
		}
	})

	t.Run("a deleted VM's series and usage disappear", func(t *testing.T) {
		if err := e.Admin.VesselV1alpha1().VirtualMachines("team-b").Delete(context.Background(), "idle", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		l := labelsOf("team-b", "idle")
		err := wait.PollUntilContextTimeout(context.Background(), time.Second, 2*time.Minute, true, func(context.Context) (bool, error) {
			_, ok := value(fst(asPrometheus.families(t, agentURL)), "vessel_vm_cpu_seconds_total", l)
			return !ok, nil
		})
		if err != nil {
			t.Fatal("the deleted VM's series are still served by the agent")
		}
		if rows, out, err := top(t, e, "bob", "-n", "team-b"); err != nil || len(rows) != 0 {
			t.Errorf("bob still sees usage in team-b after its only VM was deleted (err %v):\n%s", err, out)
		}
	})
	t.Logf("TestMetrics took %v", time.Since(start).Round(time.Second))
}

func fst[A, B any](a A, _ B) A { return a }

// toolPath is a tool hack/build-prometheus.sh builds into _output/bin; the
// test skips without it unless VESSEL_E2E=1 says it must be there.
func toolPath(t *testing.T, name string) string {
	t.Helper()
	root, err := launcher.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := root + "/_output/bin/" + name
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("VESSEL_E2E") != "" {
			t.Fatalf("%s is not built: %v; run make prometheus", name, err)
		}
		t.Skipf("%s is not built: %v; run make prometheus (set VESSEL_E2E=1 to make this a failure)", name, err)
	}
	return path
}

// checkMetrics runs promtool check metrics on a scrape; it fails on
// errors and on lint problems (names, units, help).
func checkMetrics(t *testing.T, promtool, what string, body []byte) {
	t.Helper()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(body))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics on the %s's metrics: %v\n%s", what, err, out)
	}
}
