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
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func parse(t *testing.T, args ...string) (*Options, error) {
	t.Helper()
	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(append([]string{"--hypervisor-name=hv-1"}, args...)); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	return o, o.Validate()
}

func TestDriverDefaultsToLibvirt(t *testing.T) {
	o, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if o.Driver != DriverLibvirt {
		t.Fatalf("default driver %q, want %q", o.Driver, DriverLibvirt)
	}
	if o.KubeAPIQPS != 50 || o.KubeAPIBurst != 100 {
		t.Errorf("request limits %v/%d, want the kubelet's 50/100", o.KubeAPIQPS, o.KubeAPIBurst)
	}
	if _, err := parse(t, "--kube-api-qps=0"); err == nil || !strings.Contains(err.Error(), "--kube-api-qps") {
		t.Errorf("--kube-api-qps=0: error %v", err)
	}
}

func TestSimulatedHypervisors(t *testing.T) {
	o, err := parse(t, "--hypervisor-driver=sim", "--simulate-hypervisors=3", "--hypervisor-prefix=s-",
		"--kubeconfig-dir=/tmp/kc", "--sim-boot-latency=2s", "--sim-cpus=8", "--sim-memory=16Gi")
	if err != nil {
		t.Fatalf("valid flags rejected: %v", err)
	}
	if o.Simulation.Latencies.Boot != 2*time.Second || o.Simulation.CPUs != 8 || o.Simulation.Memory != "16Gi" {
		t.Errorf("parsed %+v", o.Simulation)
	}
	got := o.simulated()
	if len(got) != 3 || got[0] != (simulatedHypervisor{"s-1", "/tmp/kc/s-1.kubeconfig"}) || got[2].name != "s-3" {
		t.Errorf("simulated hypervisors = %+v, want s-1..s-3 each with its own kubeconfig", got)
	}
	// One simulated hypervisor is the agent's own name and kubeconfig.
	o, err = parse(t, "--hypervisor-driver=sim", "--kubeconfig=/etc/agent.kubeconfig")
	if err != nil {
		t.Fatal(err)
	}
	if got := o.simulated(); len(got) != 1 || got[0] != (simulatedHypervisor{"hv-1", "/etc/agent.kubeconfig"}) {
		t.Errorf("one simulated hypervisor = %+v", got)
	}
}

func TestSimulationFlagsRejected(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--hypervisor-driver=xen"}, "--hypervisor-driver must be"},
		{[]string{"--simulate-hypervisors=3"}, "needs --hypervisor-driver=sim"},
		{[]string{"--hypervisor-driver=sim", "--simulate-hypervisors=3"}, "needs --kubeconfig-dir"},
		{[]string{"--hypervisor-driver=sim", "--sim-boot-latency=-1s"}, "must not be negative"},
		{[]string{"--hypervisor-driver=sim", "--sim-memory=lots"}, "--sim-memory"},
		{[]string{"--hypervisor-driver=sim", "--stream-cert-file=c", "--stream-key-file=k", "--stream-client-ca-file=ca", "--daemon-endpoint=127.0.0.1:1"}, "has no consoles"},
	} {
		_, err := parse(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one saying %q", tc.args, err, tc.want)
		}
	}
}
