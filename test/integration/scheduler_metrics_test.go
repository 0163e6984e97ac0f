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

package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
)

// The scheduler's metrics are on the vessel-apiserver's /metrics: a bound
// VM counts as a bound attempt with its latency, a VM that fits nowhere
// as an unschedulable VM.
func TestSchedulerMetrics(t *testing.T) {
	s := apiservertesting.Start(t, apiservertesting.Options{})
	ctx := context.Background()
	vms := s.Client.VesselV1alpha1().VirtualMachines("default")
	registerHypervisor(t, s, "metrics-hv", map[string]string{"pool": "metrics"}, "2Gi")
	fits, err := vms.Create(ctx, &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: "fits"},
		Spec:       v1alpha1.VirtualMachineSpec{Memory: resource.MustParse("1Gi"), NodeSelector: map[string]string{"pool": "metrics"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vms.Create(ctx, &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: "too-big"},
		Spec:       v1alpha1.VirtualMachineSpec{Memory: resource.MustParse("64Gi"), NodeSelector: map[string]string{"pool": "metrics"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, s, fits.Name, func(vm *v1alpha1.VirtualMachine) bool { return vm.Spec.NodeName != "" })

	want := map[string]func(v float64) bool{
		`vessel_scheduler_attempts_total{result="bound"}`:                 func(v float64) bool { return v >= 1 },
		`vessel_scheduler_attempts_total{result="unschedulable"}`:         func(v float64) bool { return v >= 1 },
		`vessel_scheduler_attempt_duration_seconds_count{result="bound"}`: func(v float64) bool { return v >= 1 },
		`vessel_scheduler_scheduling_duration_seconds_count`:              func(v float64) bool { return v >= 1 },
		`vessel_scheduler_unschedulable_vms`:                              func(v float64) bool { return v >= 1 },
		`vessel_scheduler_binding_errors_total`:                           func(v float64) bool { return v == 0 },
		`vessel_scheduler_queue_depth`:                                    func(v float64) bool { return v >= 0 },
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		body, err := s.Client.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			return false, err
		}
		values := parseSamples(string(body))
		for name, ok := range want {
			v, found := values[name]
			if !found || !ok(v) {
				last = name
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("scheduler metrics on /metrics: %v; last unmet: %s", err, last)
	}
}

// parseSamples reads the Prometheus text format's samples, by series.
func parseSamples(text string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}
