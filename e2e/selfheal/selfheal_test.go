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

package selfheal

import (
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/launcher"
)

// backWithin bounds how long a killed component may take to be running and
// ready again: a backoff of 1 s, then the start itself (kube-apiserver takes
// several seconds on a loaded 2-core machine).
const backWithin = 2 * time.Minute

func TestSupervisedSystemHealsItself(t *testing.T) {
	sys := newSystem(t)
	out := sys.Up(t)
	if !strings.Contains(out, "Vessel is running") {
		t.Errorf("vessel-up printed no next steps:\n%s", out)
	}
	t.Cleanup(func() { sys.Down(t) })

	ns := "selfheal-" + rand.String(5)
	if _, err := sys.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vm := sys.RunningGuest(t, ns, "guest", nil)
	t.Cleanup(func() { sys.DeleteGuest(t, vm) })
	qemu := qemuPID(string(vm.UID))
	if qemu == 0 {
		t.Fatalf("no QEMU process runs the guest (domain %s)", vm.UID)
	}
	t.Logf("guest %s/%s runs in QEMU pid %d", ns, vm.Name, qemu)
	guestKeepsRunning := func(t *testing.T) {
		t.Helper()
		if got := qemuPID(string(vm.UID)); got != qemu {
			t.Errorf("the guest's QEMU pid is %d, was %d", got, qemu)
		}
		sys.WaitPhase(t, ns, vm.Name, v1alpha1.VirtualMachineRunning)
	}

	t.Run("vessel-up on a running system changes nothing", func(t *testing.T) {
		before := sys.pids(t)
		out := sys.Up(t)
		if !strings.Contains(out, "Vessel already runs from "+sys.StateDir) {
			t.Errorf("vessel-up did not say it already runs:\n%s", out)
		}
		if after := sys.pids(t); !maps.Equal(before, after) {
			t.Errorf("processes changed: %v, then %v", before, after)
		}
	})

	components := sys.components(t)
	for _, name := range components {
		t.Run("SIGKILL "+name, func(t *testing.T) {
			before := sys.Status(t).Component(name)
			w := startWriter(t, sys, ns, vm.Name, name)
			w.waitAcked(t, 0, 0, 3, time.Minute)

			kill(t, name, before.PID)
			killedAt := time.Now()
			back := sys.waitBack(t, name, before.PID, backWithin)
			t.Logf("%s back as pid %d, ready %v after SIGKILL", name, back.PID, time.Since(killedAt).Round(time.Millisecond))
			if back.Restarts != before.Restarts+1 || back.LastExit == nil || back.LastExit.Reason != "signal: killed" {
				t.Errorf("status of %s: %d restarts (was %d), last exit %+v; want one more, after signal: killed", name, back.Restarts, before.Restarts, back.LastExit)
			}

			cm, an := w.acked()
			w.waitAcked(t, cm, an, 3, backWithin)
			w.verify(t)
			if out, err := sys.Kubectl(t, "get", "vm", "-n", ns); err != nil {
				t.Errorf("kubectl get vm after %s came back: %v\n%s", name, err, out)
			}
			guestKeepsRunning(t)
		})
	}

	// `make up` right after a crash waits for the supervisor to bring the
	// component back, rather than refusing or starting a second one.
	t.Run("vessel-up right after a component was killed", func(t *testing.T) {
		before := sys.pids(t)
		kill(t, "vessel-apiserver", before["vessel-apiserver"])
		sys.Up(t)
		after := sys.pids(t)
		if after["vessel-apiserver"] == before["vessel-apiserver"] {
			t.Errorf("vessel-apiserver still has pid %d", before["vessel-apiserver"])
		}
		if after["supervisor"] != before["supervisor"] {
			t.Errorf("the supervisor changed (%d -> %d); it should have restarted the component itself", before["supervisor"], after["supervisor"])
		}
		guestKeepsRunning(t)
	})

	// The supervisor itself can die too: vessel-up starts a new one,
	// which adopts what runs and starts what is missing.
	t.Run("vessel-up after the supervisor and a component were killed", func(t *testing.T) {
		before := sys.pids(t)
		kill(t, "supervisor", before["supervisor"])
		kill(t, "kube-apiserver", before["kube-apiserver"])
		w := startWriter(t, sys, ns, vm.Name, "supervisor")
		time.Sleep(2 * time.Second) // nothing restarts it meanwhile
		if c := sys.Status(t).Component("kube-apiserver"); c.State == launcher.StateRunning {
			t.Fatalf("kube-apiserver is back with no supervisor: %+v", c)
		}
		sys.Up(t)
		after := sys.pids(t)
		for name, pid := range before {
			switch name {
			case "supervisor", "kube-apiserver":
				if after[name] == pid {
					t.Errorf("%s still has the killed pid %d", name, pid)
				}
			default:
				if after[name] != pid {
					t.Errorf("%s changed pid (%d -> %d); the new supervisor should adopt it", name, pid, after[name])
				}
			}
		}
		cm, an := w.acked()
		w.waitAcked(t, cm, an, 3, backWithin)
		w.verify(t)
		guestKeepsRunning(t)
	})

	t.Run("vessel-up --status", func(t *testing.T) {
		stdout, stderr, err := sys.VesselUp(t, "--status")
		if err != nil {
			t.Fatalf("vessel-up --status: %v\n%s%s", err, stdout, stderr)
		}
		t.Logf("vessel-up --status:\n%s", indent(stdout))
		lines := strings.Split(stdout, "\n")
		if !strings.HasPrefix(lines[0], "supervisor: running") {
			t.Errorf("first line %q, want the running supervisor", lines[0])
		}
		for _, name := range components {
			var row []string
			for _, line := range lines {
				if f := strings.Fields(line); len(f) > 4 && f[0] == name {
					row = f
				}
			}
			// COMPONENT STATE PID SINCE(2 words) RESTARTS ...
			if len(row) < 6 || row[1] != "running" || row[5] == "0" {
				t.Errorf("%s: row %q, want running with restarts counted", name, row)
			}
		}
	})
}
