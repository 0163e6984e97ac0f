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
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func TestEscapeReaderStopsAtCtrlRightBracket(t *testing.T) {
	escaped := 0
	r := &escapeReader{r: strings.NewReader("ls\r\x1dnot sent"), escape: escapeByte, onEscape: func() { escaped++ }}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "ls\r" || escaped != 1 {
		t.Errorf("read %q, escaped %d times; want %q and once", got, escaped, "ls\r")
	}
	if n, err := r.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Errorf("Read after escape = %d, %v; want EOF", n, err)
	}
}

func TestExplain(t *testing.T) {
	vm := &target{Namespace: "team-a", Name: "demo"}
	vms := schema.GroupResource{Group: "vessel.dev", Resource: "virtualmachines"}
	conflict := &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusConflict,
		Reason: metav1.StatusReasonConflict, Message: "VM team-a/demo is not running (phase Stopped)"}}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"not found", apierrors.NewNotFound(vms, "demo"), "VM team-a/demo not found"},
		{"forbidden, inside an upgrade failure", &httpstream.UpgradeFailureError{Cause: apierrors.NewForbidden(
			schema.GroupResource{Group: "vessel.dev", Resource: "virtualmachines/console"}, "demo", errors.New(`User "bob" cannot get resource`))},
			`you are not allowed to open the console of VM team-a/demo: virtualmachines/console.vessel.dev "demo" is forbidden: User "bob" cannot get resource`},
		{"stopped", conflict, "cannot open the console of VM team-a/demo: VM team-a/demo is not running (phase Stopped)"},
		{"action conflict drops the preamble", apierrors.NewConflict(schema.GroupResource{Group: "vessel.dev", Resource: "virtualmachines/stop"}, "demo", errors.New("VM is already stopped")),
			"cannot open the console of VM team-a/demo: VM is already stopped"},
		{"error channel", errors.New("error executing remote command: the console stream ended (the VM stopped, or the agent closed it)"),
			"open the console of VM team-a/demo: the console stream ended (the VM stopped, or the agent closed it)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := explain(tt.err, "open the console of", vm).Error(); got != tt.want {
				t.Errorf("explain() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestCommandsAndFlags(t *testing.T) {
	var out bytes.Buffer
	cmd := NewCommand(testStreams(&out))
	for _, path := range [][]string{{"console"}, {"logs"}, {"start"}, {"stop"}, {"restart"}, {"pause"}, {"unpause"}, {"guestinfo"}} {
		if _, _, err := cmd.Find(path); err != nil {
			t.Errorf("no subcommand %v: %v", path, err)
		}
	}
	for _, flag := range []string{"kubeconfig", "context", "namespace", "as"} {
		if cmd.PersistentFlags().Lookup(flag) == nil {
			t.Errorf("kubectl flag --%s missing", flag)
		}
	}
	stop, _, _ := cmd.Find([]string{"stop"})
	for _, flag := range []string{"force", "grace-period"} {
		if stop.Flags().Lookup(flag) == nil {
			t.Errorf("stop --%s missing", flag)
		}
	}
	restart, _, _ := cmd.Find([]string{"restart"})
	if restart.Flags().Lookup("soft") == nil {
		t.Errorf("restart --soft missing")
	}
	out.Reset()
	cmd.SetArgs([]string{"restart", "--soft", "--grace-period=5", "demo"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--soft reboots through the guest agent") {
		t.Errorf("restart --soft --grace-period=5: %v, want refused", err)
	}
}

func TestPrintGuestInfo(t *testing.T) {
	var out bytes.Buffer
	agent := &metav1.Condition{Type: "AgentConnected", Status: metav1.ConditionTrue, LastTransitionTime: metav1.Date(2026, 11, 30, 15, 0, 0, 0, time.UTC)}
	info := &v1alpha1.GuestOSInfo{Name: "Vessel test guest", PrettyName: "Vessel test guest", ID: "vessel-guest", Version: "1 (busybox)", VersionID: "1",
		KernelRelease: "6.1.0-57-cloud-amd64", KernelVersion: "#1 SMP", Machine: "x86_64", Hostname: "web-1"}
	if err := printGuestInfo(&out, "team-a/web", agent, info); err != nil {
		t.Fatal(err)
	}
	want := `VM:               team-a/web
Agent connected:  yes (since 2026-11-30T15:00:00Z)
OS:               Vessel test guest 1 (busybox)
OS ID:            vessel-guest
Version ID:       1
Kernel:           6.1.0-57-cloud-amd64 #1 SMP
Machine:          x86_64
Hostname:         web-1
`
	if out.String() != want {
		t.Errorf("printGuestInfo =\n%s\nwant\n%s", out.String(), want)
	}
}

func testStreams(out *bytes.Buffer) genericiooptions.IOStreams {
	return genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: out}
}
