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
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
)

// tableAccept asks for server-side printing, as kubectl get does.
const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io"

// age is how a just-created object's AGE prints.
var age = regexp.MustCompile(`^[0-9]+s$`)

// column is a table column as kubectl sees it.
type column struct {
	name     string
	typ      string
	priority int32 // 1: only with -o wide
}

// getTable fetches resource (a list, or one object when name is set) as a
// server-side table.
func getTable(t *testing.T, s *apiservertesting.TestServer, ns, resource, name string) *metav1.Table {
	t.Helper()
	req := s.Client.VesselV1alpha1().RESTClient().Get().Resource(resource).SetHeader("Accept", tableAccept)
	if ns != "" {
		req = req.Namespace(ns)
	}
	if name != "" {
		req = req.Name(name)
	}
	raw, err := req.Do(t.Context()).Raw()
	if err != nil {
		t.Fatalf("get %s as a table: %v", resource, err)
	}
	table := &metav1.Table{}
	if err := json.Unmarshal(raw, table); err != nil {
		t.Fatalf("decode table: %v", err)
	}
	if table.Kind != "Table" || table.APIVersion != "meta.k8s.io/v1" {
		t.Fatalf("got %s %s, want a meta.k8s.io/v1 Table", table.APIVersion, table.Kind)
	}
	return table
}

func wantColumns(t *testing.T, table *metav1.Table, want []column) {
	t.Helper()
	var got []column
	for _, c := range table.ColumnDefinitions {
		got = append(got, column{c.Name, c.Type, c.Priority})
		if c.Description == "" {
			t.Errorf("column %s has no description (kubectl explain shows it)", c.Name)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("columns = %v, want %v", got, want)
	}
}

// wantRows checks the cells of every row, by name. The last cell is AGE.
func wantRows(t *testing.T, table *metav1.Table, want map[string][]any) {
	t.Helper()
	if len(table.Rows) != len(want) {
		t.Errorf("table has %d rows, want %d", len(table.Rows), len(want))
	}
	for _, row := range table.Rows {
		name, _ := row.Cells[0].(string)
		cells, ok := want[name]
		if !ok {
			t.Errorf("unexpected row %v", row.Cells)
			continue
		}
		last := len(row.Cells) - 1
		if a, _ := row.Cells[last].(string); !age.MatchString(a) {
			t.Errorf("row %s: AGE = %v, want seconds", name, row.Cells[last])
		}
		// JSON numbers decode as float64; compare printed values.
		if got, want := fmt.Sprint(row.Cells[1:last]), fmt.Sprint(cells); got != want {
			t.Errorf("row %s cells = %s, want %s", name, got, want)
		}
	}
}

func TestTable(t *testing.T) {
	s := startServer(t)
	c := s.Client.VesselV1alpha1()

	t.Run("VirtualMachines", func(t *testing.T) {
		ns := unique(t)
		web := newVM("web")
		web.Spec.CPUs = 2
		web.Spec.Memory = resource.MustParse("256Mi")
		createVM(t, s, ns, web)
		bindVM(t, s, ns, "web", "hv-1")
		setStatus(t, s, ns, "web", func(st *v1alpha1.VirtualMachineStatus) {
			st.Phase = v1alpha1.VirtualMachineRunning
			st.Interfaces = []v1alpha1.InterfaceStatus{{Name: "default", IPAddress: "10.0.2.15"}}
			st.Conditions = []metav1.Condition{{Type: v1alpha1.VirtualMachineConditionReady, Status: metav1.ConditionUnknown,
				Reason: v1alpha1.VirtualMachineReasonHypervisorNotReady, Message: "hypervisor hv-1 is not ready", LastTransitionTime: metav1.Now()}}
		})
		halted := newVM("halted")
		halted.Spec.RunStrategy = v1alpha1.RunStrategyHalted
		createVM(t, s, ns, halted)
		createVM(t, s, ns, newVM("leaving"))
		bindVM(t, s, ns, "leaving", "hv-2")
		if err := vms(s, ns).Delete(t.Context(), "leaving", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		defer releaseFinalizers(t, s, ns, "leaving")

		columns := []column{
			{"Name", "string", 0}, {"Status", "string", 0}, {"Ready", "string", 0}, {"Node", "string", 0}, {"IP", "string", 0},
			{"CPU", "integer", 1}, {"Memory", "string", 1}, {"RunStrategy", "string", 1}, {"Age", "string", 0},
		}
		list := getTable(t, s, ns, "virtualmachines", "")
		wantColumns(t, list, columns)
		wantRows(t, list, map[string][]any{
			"web":     {"Running", "Unknown", "hv-1", "10.0.2.15", 2, "256Mi", "Always"},
			"halted":  {"Pending", "False", "<none>", "<none>", 1, "128Mi", "Halted"},
			"leaving": {"Terminating", "False", "hv-2", "<none>", 1, "128Mi", "Always"},
		})
		if list.ResourceVersion == "" {
			t.Error("list table has no resourceVersion: kubectl get --watch cannot continue from it")
		}

		one := getTable(t, s, ns, "virtualmachines", "web")
		wantColumns(t, one, columns)
		wantRows(t, one, map[string][]any{"web": {"Running", "Unknown", "hv-1", "10.0.2.15", 2, "256Mi", "Always"}})
	})

	t.Run("VirtualMachineSnapshots", func(t *testing.T) {
		ns := unique(t)
		snaps := c.VirtualMachineSnapshots(ns)
		createVM(t, s, ns, newVM("vm-a"))
		done := createSnapshot(t, s, ns, "done", "vm-a", false)
		createSnapshot(t, s, ns, "new", "vm-a", false)
		done.Status = v1alpha1.VirtualMachineSnapshotStatus{
			Phase: v1alpha1.SnapshotSucceeded, ReadyToUse: true, Size: ptr(resource.MustParse("1Gi")), MemoryIncluded: true,
		}
		if _, err := snaps.UpdateStatus(t.Context(), done, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}

		list := getTable(t, s, ns, "virtualmachinesnapshots", "")
		wantColumns(t, list, []column{
			{"Name", "string", 0}, {"VM", "string", 0}, {"Phase", "string", 0}, {"Ready", "boolean", 0}, {"Size", "string", 0},
			{"Memory", "boolean", 1}, {"Error", "string", 1}, {"Age", "string", 0},
		})
		wantRows(t, list, map[string][]any{
			"done": {"vm-a", "Succeeded", true, "1Gi", true, "<none>"},
			"new":  {"vm-a", "Pending", false, "<none>", false, "<none>"},
		})
	})

	t.Run("VirtualMachineRestores", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("vm-a"))
		createSnapshot(t, s, ns, "done", "vm-a", true)
		if _, err := c.VirtualMachineRestores(ns).Create(t.Context(), &v1alpha1.VirtualMachineRestore{
			ObjectMeta: metav1.ObjectMeta{Name: "back"},
			Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: "vm-a", SnapshotName: "done"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		list := getTable(t, s, ns, "virtualmachinerestores", "")
		wantColumns(t, list, []column{
			{"Name", "string", 0}, {"VM", "string", 0}, {"Snapshot", "string", 0}, {"Complete", "string", 0},
			{"Error", "string", 1}, {"Age", "string", 0},
		})
		wantRows(t, list, map[string][]any{"back": {"vm-a", "done", "false", "<none>"}})
	})

	t.Run("Hypervisors", func(t *testing.T) {
		// Hypervisors are cluster-scoped: fetch this test's one by one.
		ready, cordoned := unique(t), unique(t)
		hvs := c.Hypervisors()
		if _, err := hvs.Create(t.Context(), &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: ready}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := hvs.Create(t.Context(), &v1alpha1.Hypervisor{
			ObjectMeta: metav1.ObjectMeta{Name: cordoned}, Spec: v1alpha1.HypervisorSpec{Unschedulable: true},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		hv, err := hvs.Get(t.Context(), ready, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		size := v1alpha1.HypervisorResources{CPUs: 8, Memory: resource.MustParse("16Gi"), VMs: 10}
		hv.Status = v1alpha1.HypervisorStatus{
			Capacity:       size,
			Allocatable:    size,
			Allocated:      v1alpha1.HypervisorResources{CPUs: 4, Memory: resource.MustParse("4Gi"), VMs: 2},
			KVM:            true,
			DaemonEndpoint: "10.0.0.1:10250",
			Conditions: []metav1.Condition{{
				Type: v1alpha1.HypervisorConditionReady, Status: metav1.ConditionTrue,
				Reason: "Heartbeat", Message: "agent reports", LastTransitionTime: metav1.Now(),
			}},
		}
		if _, err := hvs.UpdateStatus(t.Context(), hv, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}

		columns := []column{
			{"Name", "string", 0}, {"Ready", "string", 0}, {"VMs", "string", 0}, {"CPU", "string", 0}, {"Memory", "string", 0},
			{"KVM", "string", 1}, {"Endpoint", "string", 1}, {"Age", "string", 0},
		}
		for name, cells := range map[string][]any{
			ready:    {"True", "2/10", "4/8", "4Gi/16Gi", "true", "10.0.0.1:10250"},
			cordoned: {"Unknown,SchedulingDisabled", "0/0", "0/0", "0/0", "false", "<none>"},
		} {
			table := getTable(t, s, "", "hypervisors", name)
			wantColumns(t, table, columns)
			wantRows(t, table, map[string][]any{name: cells})
		}
	})
}

// TestDiscovery checks what kubectl learns about the API: resources,
// subresources, verbs, short names and the "vessel" category.
func TestDiscovery(t *testing.T) {
	s := startServer(t)

	groups, err := s.Client.Discovery().ServerGroups()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, g := range groups.Groups {
		if g.Name == "vessel.dev" {
			found = g.PreferredVersion.GroupVersion == "vessel.dev/v1alpha1"
		}
	}
	if !found {
		t.Errorf("group vessel.dev with preferred version v1alpha1 not discovered: %+v", groups.Groups)
	}

	list, err := s.Client.Discovery().ServerResourcesForGroupVersion("vessel.dev/v1alpha1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]metav1.APIResource{}
	for _, r := range list.APIResources {
		got[r.Name] = r
	}

	crud := []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
	status := []string{"get", "patch", "update"}
	create := []string{"create"}
	for _, want := range []struct {
		name       string
		namespaced bool
		kind       string
		singular   string
		shortNames []string
		verbs      []string
	}{
		{"virtualmachines", true, "VirtualMachine", "virtualmachine", []string{"vm", "vms"}, crud},
		{"virtualmachines/status", true, "VirtualMachine", "", nil, status},
		{"virtualmachines/binding", true, "VirtualMachineBinding", "", nil, create},
		{"virtualmachines/start", true, "VirtualMachineActionOptions", "", nil, create},
		{"virtualmachines/stop", true, "VirtualMachineActionOptions", "", nil, create},
		{"virtualmachines/restart", true, "VirtualMachineActionOptions", "", nil, create},
		{"virtualmachines/pause", true, "VirtualMachineActionOptions", "", nil, create},
		{"virtualmachines/unpause", true, "VirtualMachineActionOptions", "", nil, create},
		{"virtualmachinesnapshots", true, "VirtualMachineSnapshot", "virtualmachinesnapshot", []string{"vmsnap", "vmsnaps"}, crud},
		{"virtualmachinesnapshots/status", true, "VirtualMachineSnapshot", "", nil, status},
		{"virtualmachinerestores", true, "VirtualMachineRestore", "virtualmachinerestore", []string{"vmrestore", "vmrestores"}, crud},
		{"virtualmachinerestores/status", true, "VirtualMachineRestore", "", nil, status},
		{"hypervisors", false, "Hypervisor", "hypervisor", []string{"hv"}, crud},
		{"hypervisors/status", false, "Hypervisor", "", nil, status},
	} {
		r, ok := got[want.name]
		if !ok {
			t.Errorf("%s not discovered", want.name)
			continue
		}
		verbs := slices.Sorted(slices.Values(r.Verbs))
		if r.Namespaced != want.namespaced || r.Kind != want.kind || r.SingularName != want.singular ||
			!slices.Equal(r.ShortNames, want.shortNames) || !slices.Equal(verbs, want.verbs) {
			t.Errorf("%s: namespaced %v, kind %s, singular %q, shortNames %v, verbs %v; want %v, %s, %q, %v, %v",
				want.name, r.Namespaced, r.Kind, r.SingularName, r.ShortNames, verbs,
				want.namespaced, want.kind, want.singular, want.shortNames, want.verbs)
		}
		// `kubectl get vessel` lists every kind, and only kinds.
		wantCategories := []string{"vessel"}
		if want.shortNames == nil {
			wantCategories = nil
		}
		if !slices.Equal(r.Categories, wantCategories) {
			t.Errorf("%s: categories %v, want %v", want.name, r.Categories, wantCategories)
		}
	}
}
