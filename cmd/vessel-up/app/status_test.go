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

package app

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vessel-vm/vessel/launcher"
)

func TestWriteHypervisors(t *testing.T) {
	hvs := []launcher.Hypervisor{
		{Name: "vm-1", Netns: "vessel-abc123-1", Address: netip.MustParsePrefix("10.250.0.11/24"), Dir: "/x/.vessel/hypervisors/vm-1"},
		{Name: "vm-2", Netns: "vessel-abc123-2", Address: netip.MustParsePrefix("10.250.0.12/24"), Dir: "/x/.vessel/hypervisors/vm-2"},
	}
	var out strings.Builder
	if err := WriteHypervisors(&out, hvs); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, line := range strings.Split(out.String(), "\n") {
		rows = append(rows, strings.Join(strings.Fields(line), " "))
	}
	for _, want := range []string{
		"HYPERVISOR NETNS FABRIC ADDRESS LIBVIRT",
		"vm-1 vessel-abc123-1 10.250.0.11 virsh -c 'qemu:///system?socket=/x/.vessel/hypervisors/vm-1/run/libvirt-sock'",
		"vm-2 vessel-abc123-2 10.250.0.12 virsh -c 'qemu:///system?socket=/x/.vessel/hypervisors/vm-2/run/libvirt-sock'",
		"QEMU logs: /x/.vessel/hypervisors/<hypervisor>/log/qemu/<domain>.log; inside a hypervisor: ip netns exec <netns> ...",
	} {
		if !slices.Contains(rows, want) {
			t.Errorf("hypervisors lack the row %q:\n%s", want, out.String())
		}
	}
}

func TestWriteStatus(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) *time.Time { t := now.Add(-ago); return &t }
	next := now.Add(4 * time.Second)
	st := &launcher.Status{
		StateDir:   "/x/.vessel",
		Supervisor: launcher.SupervisorStatus{PID: 10, Running: true, StartedAt: *at(time.Hour), LogFile: "/x/.vessel/logs/supervisor.log"},
		Components: []launcher.ComponentStatus{
			{Name: "etcd", State: launcher.StateRunning, PID: 11, StartedAt: at(time.Hour)},
			{Name: "kube-apiserver", State: launcher.StateRunning, PID: 12, StartedAt: at(time.Minute), Restarts: 2,
				LastExit: &launcher.Exit{At: *at(61 * time.Second), Reason: "signal: killed"}},
			{Name: "vessel-apiserver", State: launcher.StateBackoff, Restarts: 3, NextStart: &next,
				LastExit: &launcher.Exit{At: *at(time.Second), Reason: "exit status 1"}},
			{Name: "vessel-agent", State: launcher.StateWaiting, Message: "waiting for vessel-apiserver"},
		},
	}
	var out strings.Builder
	if err := writeStatus(&out, st, now); err != nil {
		t.Fatal(err)
	}
	// Column widths are tabwriter's business: compare words.
	var rows []string
	for _, line := range strings.Split(out.String(), "\n") {
		rows = append(rows, strings.Join(strings.Fields(line), " "))
	}
	for _, want := range []string{
		"supervisor: running, pid 10, started 1h0m0s ago; log /x/.vessel/logs/supervisor.log",
		"COMPONENT STATE PID SINCE RESTARTS LAST EXIT DETAIL",
		"etcd running 11 1h0m0s ago 0 -",
		"kube-apiserver running 12 1m0s ago 2 signal: killed, 1m1s ago",
		"vessel-apiserver backoff - - 3 exit status 1, 1s ago starts again in 4s",
		"vessel-agent waiting - - 0 - waiting for vessel-apiserver",
		"logs: /x/.vessel/logs/<component>.log",
	} {
		if !slices.Contains(rows, want) {
			t.Errorf("status lacks the row %q:\n%s", want, out.String())
		}
	}

	st.Supervisor.Running = false
	out.Reset()
	if err := writeStatus(&out, st, now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "supervisor: not running (vessel-up starts it)") {
		t.Errorf("status without a supervisor:\n%s", out.String())
	}
}
