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

package hypervisor

import (
	"errors"
	"reflect"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"
)

func TestParseGuestInfo(t *testing.T) {
	p := func(field string, v any) golibvirt.TypedParam {
		return golibvirt.TypedParam{Field: field, Value: golibvirt.TypedParamValue{I: v}}
	}
	// As libvirt 9.0 answers for the test guest (qemu-ga 7.2).
	got := parseGuestInfo([]golibvirt.TypedParam{
		p("os.id", "vessel-guest"), p("os.name", "Vessel test guest"), p("os.pretty-name", "Vessel test guest"),
		p("os.version", "1 (busybox, qemu-ga, dropbear)"), p("os.version-id", "1"),
		p("os.kernel-release", "6.1.0-57-cloud-amd64"), p("os.kernel-version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3"),
		p("os.machine", "x86_64"), p("hostname", "web-1"), p("user.count", uint32(0)),
	})
	want := &GuestInfo{
		OS: GuestOS{Name: "Vessel test guest", PrettyName: "Vessel test guest", ID: "vessel-guest", Version: "1 (busybox, qemu-ga, dropbear)",
			VersionID: "1", KernelRelease: "6.1.0-57-cloud-amd64", KernelVersion: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3", Machine: "x86_64"},
		Hostname: "web-1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseGuestInfo = %+v, want %+v", got, want)
	}
}

func TestGuestInterfacesDropLoopback(t *testing.T) {
	got := guestInterfaces([]golibvirt.DomainInterface{
		{Name: "lo", Hwaddr: []string{"00:00:00:00:00:00"}, Addrs: []golibvirt.DomainIPAddr{{Type: 0, Addr: "127.0.0.1", Prefix: 8}}},
		{Name: "eth0", Hwaddr: []string{"52:54:00:aa:bb:cc"}, Addrs: []golibvirt.DomainIPAddr{
			{Type: int32(golibvirt.IPAddrTypeIpv4), Addr: "10.0.2.15", Prefix: 24},
			{Type: int32(golibvirt.IPAddrTypeIpv6), Addr: "fe80::5054:ff:feaa:bbcc", Prefix: 64},
		}},
	})
	want := []GuestInterface{{Name: "eth0", MAC: "52:54:00:aa:bb:cc", Addresses: []GuestAddress{
		{IP: "10.0.2.15", Prefix: 24}, {IP: "fe80::5054:ff:feaa:bbcc", Prefix: 64, IPv6: true},
	}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("guestInterfaces = %+v, want %+v", got, want)
	}
}

func TestAgentErrNotConnected(t *testing.T) {
	notConnected := golibvirt.Error{Code: uint32(golibvirt.ErrAgentUnresponsive), Message: "Guest agent is not responding: QEMU guest agent is not connected"}
	if err := agentErr(notConnected, "ask", "uid"); !errors.Is(err, ErrAgentNotConnected) {
		t.Errorf("agentErr(%v) = %v, want ErrAgentNotConnected", notConnected, err)
	}
	other := golibvirt.Error{Code: uint32(golibvirt.ErrInternalError), Message: "boom"}
	if err := agentErr(other, "ask", "uid"); errors.Is(err, ErrAgentNotConnected) {
		t.Errorf("agentErr(%v) = %v, want not ErrAgentNotConnected", other, err)
	}
}
