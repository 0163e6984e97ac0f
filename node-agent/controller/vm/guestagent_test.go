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

package vm

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

func TestAgentProbeDue(t *testing.T) {
	started := testNow.Add(-30 * time.Second)
	at := func(ago time.Duration, connected bool) *agentObservation {
		return &agentObservation{Connected: connected, At: testNow.Add(-ago)}
	}
	tests := []struct {
		name    string
		last    *agentObservation
		stale   bool
		started time.Time
		want    bool
	}{
		{"never asked", nil, false, started, true},
		{"agent event since", at(time.Second, true), true, started, true},
		{"connected, asked recently", at(10*time.Second, true), false, started, false},
		{"connected, asked long ago", at(agentRefresh, true), false, started, true},
		{"booting, not connected, asked just now", at(time.Second, false), false, started, false},
		{"booting, not connected, retry", at(agentRetry, false), false, started, true},
		{"long running without an agent: events only", at(time.Hour, false), false, testNow.Add(-time.Hour), false},
	}
	for _, tt := range tests {
		if got := agentProbeDue(tt.last, tt.stale, testNow, tt.started); got != tt.want {
			t.Errorf("%s: agentProbeDue = %v, want %v", tt.name, got, tt.want)
		}
	}
	if got := agentRequeue(nil, testNow, started); got != agentRetry {
		t.Errorf("agentRequeue while booting = %v, want %v", got, agentRetry)
	}
	if got := agentRequeue(at(time.Second, true), testNow, started); got != 0 {
		t.Errorf("agentRequeue when connected = %v, want 0", got)
	}
}

var testGuestInfo = &hypervisor.GuestInfo{
	OS:       hypervisor.GuestOS{Name: "Vessel test guest", ID: "vessel-guest", VersionID: "1", KernelRelease: "6.1.0-57-cloud-amd64", Machine: "x86_64"},
	Hostname: "web-1",
	Interfaces: []hypervisor.GuestInterface{{Name: "eth0", MAC: "52:54:00:AA:BB:CC", Addresses: []hypervisor.GuestAddress{
		{IP: "fe80::1", Prefix: 64, IPv6: true}, {IP: "fd00::5", Prefix: 64, IPv6: true}, {IP: "10.0.2.15", Prefix: 24},
	}}, {Name: "eth1", MAC: "52:54:00:00:00:01", Addresses: []hypervisor.GuestAddress{{IP: "192.168.1.2", Prefix: 24}}}},
}

func TestAgentStatus(t *testing.T) {
	running := dom(hypervisor.StateRunning, "")
	connected := &agentObservation{Connected: true, Info: testGuestInfo}
	gone := &agentObservation{Err: "the QEMU guest agent is not connected"}
	cond := func(status metav1.ConditionStatus) []metav1.Condition {
		return []metav1.Condition{{Type: v1alpha1.VirtualMachineConditionAgentConnected, Status: status, Reason: "X"}}
	}
	wantInfo := &v1alpha1.GuestOSInfo{Name: "Vessel test guest", ID: "vessel-guest", VersionID: "1", KernelRelease: "6.1.0-57-cloud-amd64", Machine: "x86_64", Hostname: "web-1"}
	tests := []struct {
		name       string
		supported  bool
		dom        *hypervisor.Domain
		agent      *agentObservation
		prev       []metav1.Condition
		prevInfo   *v1alpha1.GuestOSInfo
		wantStatus metav1.ConditionStatus // "" for no condition
		wantReason string
		wantInfo   *v1alpha1.GuestOSInfo
	}{
		{name: "hypervisor without guest agents: no condition", dom: running, agent: connected},
		{name: "connected", supported: true, dom: running, agent: connected, wantStatus: metav1.ConditionTrue, wantReason: "Connected", wantInfo: wantInfo},
		{name: "not asked yet", supported: true, dom: running, wantStatus: metav1.ConditionFalse, wantReason: "Connecting"},
		{name: "not asked yet after an agent restart keeps True", supported: true, dom: running, prev: cond(metav1.ConditionTrue), prevInfo: wantInfo,
			wantStatus: metav1.ConditionTrue, wantReason: "X", wantInfo: wantInfo},
		{name: "agent went away: False, info kept", supported: true, dom: running, agent: gone, prev: cond(metav1.ConditionTrue), prevInfo: wantInfo,
			wantStatus: metav1.ConditionFalse, wantReason: "NotConnected", wantInfo: wantInfo},
		{name: "guest stopped", supported: true, dom: dom(hypervisor.StateShutoff, hypervisor.ReasonShutdown), prev: cond(metav1.ConditionTrue), prevInfo: wantInfo,
			wantStatus: metav1.ConditionFalse, wantReason: "GuestNotRunning", wantInfo: wantInfo},
		{name: "never ran: no condition", supported: true, dom: dom(hypervisor.StateShutoff, "")},
	}
	for _, tt := range tests {
		vm := testVM(v1alpha1.RunStrategyAlways, v1alpha1.VirtualMachineRunning)
		vm.Status.Conditions, vm.Status.GuestOSInfo = tt.prev, tt.prevInfo
		st := computeStatus(vm, &statusInput{Now: metav1.NewTime(testNow), Domain: tt.dom, ShouldRun: true, AgentSupported: tt.supported, Agent: tt.agent})
		c := meta.FindStatusCondition(st.Conditions, v1alpha1.VirtualMachineConditionAgentConnected)
		switch {
		case tt.wantStatus == "" && c != nil:
			t.Errorf("%s: AgentConnected = %+v, want none", tt.name, c)
		case tt.wantStatus == "":
		case c == nil:
			t.Errorf("%s: no AgentConnected condition, want %s", tt.name, tt.wantStatus)
		case c.Status != tt.wantStatus || c.Reason != tt.wantReason:
			t.Errorf("%s: AgentConnected = %s/%s, want %s/%s", tt.name, c.Status, c.Reason, tt.wantStatus, tt.wantReason)
		}
		if !reflect.DeepEqual(st.GuestOSInfo, tt.wantInfo) {
			t.Errorf("%s: guestOSInfo = %+v, want %+v", tt.name, st.GuestOSInfo, tt.wantInfo)
		}
	}
}

func TestGuestAgentAddresses(t *testing.T) {
	if got, want := guestAgentAddresses(testGuestInfo, "52:54:00:aa:bb:cc"), []string{"10.0.2.15", "fd00::5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("addresses of eth0 = %v, want %v (IPv4 first, no link-local)", got, want)
	}
	if got := guestAgentAddresses(testGuestInfo, "52:54:00:99:99:99"); got != nil {
		t.Errorf("addresses of an unknown MAC = %v, want none", got)
	}
	if got := guestAgentAddresses(nil, "52:54:00:aa:bb:cc"); got != nil {
		t.Errorf("addresses without an answer = %v, want none", got)
	}
}

// fakeAgent answers GuestInfo from a script.
type fakeAgent struct {
	hypervisor.GuestAgent
	mu    sync.Mutex
	calls int
	info  *hypervisor.GuestInfo
	err   error
}

func (f *fakeAgent) GuestInfo(ctx context.Context, uid string) (*hypervisor.GuestInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.info, f.err
}

// TestAgentWatcher: a pass never waits for the agent; the probe's answer
// comes back through the queue, an agent event makes the next pass ask
// again, and a stopped guest forgets its agent.
func TestAgentWatcher(t *testing.T) {
	clk := clocktesting.NewFakeClock(testNow)
	agent := &fakeAgent{err: hypervisor.ErrAgentNotConnected}
	enqueued := make(chan string, 10)
	w := newAgentWatcher(agent, clk, func(key string) { enqueued <- key })
	ctx := t.Context()
	started := testNow

	if o := w.observe(ctx, "ns/vm", "u1", hypervisor.StateRunning, started); o != nil {
		t.Fatalf("first pass observed %+v before any probe", o)
	}
	waitKey(t, enqueued)
	o := w.observe(ctx, "ns/vm", "u1", hypervisor.StateRunning, started)
	if o == nil || o.Connected {
		t.Fatalf("after a failed probe: %+v, want not connected", o)
	}
	agent.mu.Lock()
	agent.info, agent.err = testGuestInfo, nil
	agent.mu.Unlock()
	w.changed("u1") // libvirt: the agent connected
	w.observe(ctx, "ns/vm", "u1", hypervisor.StateRunning, started)
	waitKey(t, enqueued)
	if o := w.observe(ctx, "ns/vm", "u1", hypervisor.StateRunning, started); o == nil || !o.Connected || o.Info.Hostname != "web-1" {
		t.Fatalf("after the agent connected: %+v, want connected as web-1", o)
	}
	if o := w.observe(ctx, "ns/vm", "u1", hypervisor.StatePaused, started); o == nil || !o.Connected {
		t.Fatalf("paused guest: %+v, want the last answer kept", o)
	}
	if o := w.observe(ctx, "ns/vm", "u1", hypervisor.StateShutoff, started); o != nil {
		t.Fatalf("stopped guest: %+v, want nothing", o)
	}
	agent.mu.Lock()
	calls := agent.calls
	agent.mu.Unlock()
	if calls != 2 {
		t.Errorf("%d probes, want 2 (first pass, agent event)", calls)
	}
}

func waitKey(t *testing.T, ch <-chan string) {
	t.Helper()
	select {
	case k := <-ch:
		if k != "ns/vm" {
			t.Fatalf("enqueued %q, want ns/vm", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the probe never enqueued the VM")
	}
}

// Status lists the DHCP lease first and what the guest's agent reports
// after it, without repeating an address; a guest that claims addresses
// while its agent is not connected gets none listed.
func TestStatusAddressesDHCPBeforeGuestAgent(t *testing.T) {
	vm := testVM(v1alpha1.RunStrategyAlways, v1alpha1.VirtualMachineRunning)
	vm.Spec.Interfaces = []v1alpha1.Interface{{Name: "default", Type: v1alpha1.InterfaceTypeManaged}}
	in := statusInput{
		Now: metav1.NewTime(testNow), Domain: dom(hypervisor.StateRunning, ""), ShouldRun: true, AgentSupported: true,
		Agent: &agentObservation{Connected: true, Info: testGuestInfo},
		IPs:   map[string][]string{"default": {"10.0.2.15"}},
		MACs:  map[string]string{"default": "52:54:00:aa:bb:cc"},
	}
	st := computeStatus(vm, &in)
	want := []v1alpha1.IPAddress{
		{Address: "10.0.2.15", Source: v1alpha1.IPAddressSourceDHCP},
		{Address: "fd00::5", Source: v1alpha1.IPAddressSourceGuestAgent},
	}
	if len(st.Interfaces) != 1 || !reflect.DeepEqual(st.Interfaces[0].IPAddresses, want) || st.Interfaces[0].IPAddress != "10.0.2.15" {
		t.Fatalf("interfaces = %+v, want addresses %+v and primary 10.0.2.15", st.Interfaces, want)
	}
	in.Agent = &agentObservation{Err: "not connected"}
	st = computeStatus(vm, &in)
	if got := st.Interfaces[0].IPAddresses; len(got) != 1 || got[0].Source != v1alpha1.IPAddressSourceDHCP {
		t.Errorf("without a connected agent: %+v, want the lease alone", got)
	}
}
