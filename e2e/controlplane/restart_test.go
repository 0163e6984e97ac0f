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

package controlplane

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/pidfile"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher"
)

// TestCrashLosesNoAcknowledgedCreate kills the vessel-apiserver (and the
// etcd embedded in it) with SIGKILL while clients create VMs through
// kube-apiserver as fast as they can, restarts it on the same data, and
// checks that every create that was answered with success is still there.
// Creates that failed may or may not have been committed; that is what a
// client retrying after an error has to expect anyway.
func TestCrashLosesNoAcknowledgedCreate(t *testing.T) {
	c := controlPlane(t)
	ns := newNamespace(t, c)
	cfg := restConfig(t, c, admin)
	cfg.Timeout = 10 * time.Second
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vms := client.VesselV1alpha1().VirtualMachines(ns)

	creator := &creator{acked: map[string]bool{}, failures: map[string]int{}, samples: map[string]string{}}
	ctx, stopCreating := context.WithCancel(t.Context())
	defer stopCreating()
	var wg sync.WaitGroup
	const workers = 4
	for range workers {
		wg.Go(func() { creator.run(ctx, vms, ns) })
	}

	if !creator.waitAcked(t, 50, 30*time.Second) {
		t.Fatalf("creates do not succeed before the crash: %s", creator)
	}
	pid := vesselAPIServerPID(t, c)
	ackedAtKill := creator.count()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 vessel-apiserver (pid %d): %v", pid, err)
	}
	killedAt := time.Now()
	t.Logf("kill at %s", killedAt.Format("15:04:05.000"))
	t.Logf("killed vessel-apiserver (pid %d) after %d acknowledged creates", pid, ackedAtKill)

	if err := c.RestartVesselAPIServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("vessel-apiserver (pid %d) serves and its APIService is Available %v after the kill",
		vesselAPIServerPID(t, c), time.Since(killedAt).Round(time.Millisecond))
	if newPID := vesselAPIServerPID(t, c); newPID == pid {
		t.Fatalf("vessel-apiserver still has pid %d", pid)
	}

	// Creates succeed again, then stop.
	if !creator.waitAcked(t, creator.count()+50, 30*time.Second) {
		t.Errorf("creates do not succeed again after the restart: %s", creator)
	}
	stopCreating()
	wg.Wait()
	t.Logf("creator: %s", creator)
	for code, sample := range creator.samples {
		t.Logf("first %s: %s", code, sample)
	}

	present := map[string]bool{}
	list, err := vms.List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, vm := range list.Items {
		present[vm.Name] = true
	}
	var lost, unacknowledged []string
	for name := range creator.acked {
		if !present[name] {
			lost = append(lost, name)
		}
	}
	for name := range present {
		if !creator.acked[name] {
			unacknowledged = append(unacknowledged, name)
		}
	}
	slices.Sort(lost)
	slices.Sort(unacknowledged)
	t.Logf("%d acknowledged creates (%d before the kill): %d present, %d lost; %d VMs present whose create failed on the client side (committed, answer lost): %v",
		len(creator.acked), ackedAtKill, len(creator.acked)-len(lost), len(lost), len(unacknowledged), unacknowledged)
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged creates are gone after the crash: %v", len(lost), len(creator.acked), lost)
	}

	// A crash should look like a 503 to clients (client-go retries those
	// that carry Retry-After), never like a 403, which no client retries:
	// until the restarted server has loaded the front-proxy CA from
	// kube-system/extension-apiserver-authentication it answers 503.
	if sample, ok := creator.samples["403"]; ok {
		t.Errorf("%d creates by the admin answered 403 right after the restart: %s", creator.failures["403"], sample)
	}
}

// vesselAPIServerPID reads the PID the launcher recorded, and checks that
// it is the vessel-apiserver of this state directory.
func vesselAPIServerPID(t *testing.T, c *launcher.Cluster) int {
	t.Helper()
	pid, err := pidfile.Read(filepath.Join(c.StateDir, "run", "vessel-apiserver.pid"))
	if err != nil {
		t.Fatal(err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "vessel-apiserver") || !strings.Contains(string(cmdline), c.StateDir) {
		t.Fatalf("pid %d is not this control plane's vessel-apiserver (%v): %q", pid, err, cmdline)
	}
	return pid
}

// creator creates VMs, one after the other, and counts what succeeded.
type creator struct {
	seq atomic.Int64

	mu       sync.Mutex
	acked    map[string]bool
	failures map[string]int // by HTTP status, 0 for no answer
	// samples holds the first error of each status, for the log.
	samples map[string]string
}

func (cr *creator) run(ctx context.Context, vms interface {
	Create(context.Context, *v1alpha1.VirtualMachine, metav1.CreateOptions) (*v1alpha1.VirtualMachine, error)
}, ns string) {
	for ctx.Err() == nil {
		name := fmt.Sprintf("crash-%06d", cr.seq.Add(1))
		_, err := vms.Create(ctx, newVM(ns, name, v1alpha1.RunStrategyHalted), metav1.CreateOptions{})
		cr.mu.Lock()
		if err == nil {
			cr.acked[name] = true
		} else if ctx.Err() == nil {
			code := strconv.Itoa(statusCode(err))
			cr.failures[code]++
			if _, ok := cr.samples[code]; !ok {
				cr.samples[code] = fmt.Sprintf("%s after %v", err, time.Now().Format("15:04:05.000"))
			}
		}
		cr.mu.Unlock()
		if err != nil {
			// While the server is down, answers come at once: do not spin.
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (cr *creator) count() int {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return len(cr.acked)
}

func (cr *creator) waitAcked(t *testing.T, n int, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for cr.count() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func (cr *creator) String() string {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	var failures []string
	for _, code := range slices.Sorted(maps.Keys(cr.failures)) {
		failures = append(failures, fmt.Sprintf("%d× %s", cr.failures[code], code))
	}
	return fmt.Sprintf("%d attempts, %d acknowledged, failures by status: [%s]",
		cr.seq.Load(), len(cr.acked), strings.Join(failures, ", "))
}
