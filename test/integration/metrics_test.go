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
	"slices"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestMetricsAPIDiscoveryAndReadOnly checks metrics.vessel.dev as kubectl
// and clients see it: one namespaced, read-only resource; a VM without
// usage (no agent read it) is NotFound in that group and absent from lists.
func TestMetricsAPIDiscoveryAndReadOnly(t *testing.T) {
	s := startServer(t)
	list, err := s.Client.Discovery().ServerResourcesForGroupVersion("metrics.vessel.dev/v1alpha1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list.APIResources) != 1 {
		t.Fatalf("metrics.vessel.dev/v1alpha1 serves %d resources, want 1: %+v", len(list.APIResources), list.APIResources)
	}
	r := list.APIResources[0]
	verbs := append([]string(nil), r.Verbs...)
	slices.Sort(verbs)
	if r.Name != "virtualmachines" || r.Kind != "VirtualMachineMetrics" || !r.Namespaced || !slices.Equal(verbs, []string{"get", "list"}) {
		t.Errorf("metrics.vessel.dev resource = %s kind %s namespaced %v verbs %v; want virtualmachines, VirtualMachineMetrics, namespaced, get and list only",
			r.Name, r.Kind, r.Namespaced, verbs)
	}

	createVM(t, s, "team-a", newVM("demo"))
	usage := s.Client.MetricsV1alpha1().VirtualMachineMetricses("team-a")
	if _, err := usage.Get(t.Context(), "demo", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("usage of a VM no agent reported: err %v, want NotFound", err)
	}
	items, err := usage.List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(items.Items) != 0 {
		t.Errorf("usage listed for VMs no agent reported: %+v", items.Items)
	}
}
