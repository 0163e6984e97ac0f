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
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	vesselv1alpha1 "github.com/vessel-vm/vessel/generated/clientset/versioned/typed/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/launcher"
)

// These tests drive the aggregated API with the real kubectl through the
// real kube-apiserver: what a user relies on after `make up`.

func TestKubectlDiscovery(t *testing.T) {
	c := controlPlane(t)
	k := newKubectl(t, c, launcher.AdminKubeconfig)

	if versions := strings.Fields(k.ok("api-versions")); !slices.Contains(versions, "vessel.dev/v1alpha1") {
		t.Errorf("kubectl api-versions does not list vessel.dev/v1alpha1:\n%s", strings.Join(versions, "\n"))
	}

	type resource struct {
		shortNames []string
		namespaced string
		kind       string
	}
	got := map[string]resource{}
	out := k.ok("api-resources", "--api-group=vessel.dev", "--no-headers")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line) // NAME SHORTNAMES APIVERSION NAMESPACED KIND
		if len(f) != 5 {
			t.Fatalf("kubectl api-resources row %q: want 5 columns (every resource has short names)", line)
		}
		got[f[0]] = resource{shortNames: strings.Split(f[1], ","), namespaced: f[3], kind: f[4]}
	}
	for name, want := range map[string]resource{
		"virtualmachines":         {[]string{"vm"}, "true", "VirtualMachine"},
		"virtualmachinesnapshots": {[]string{"vmsnap"}, "true", "VirtualMachineSnapshot"},
		"virtualmachinerestores":  {[]string{"vmrestore"}, "true", "VirtualMachineRestore"},
		"hypervisors":             {[]string{"hv"}, "false", "Hypervisor"},
	} {
		r, ok := got[name]
		if !ok {
			t.Errorf("kubectl api-resources --api-group=vessel.dev does not list %s:\n%s", name, out)
			continue
		}
		if !slices.Contains(r.shortNames, want.shortNames[0]) {
			t.Errorf("%s: short names %v, want %s among them", name, r.shortNames, want.shortNames[0])
		}
		if r.namespaced != want.namespaced || r.kind != want.kind {
			t.Errorf("%s: namespaced=%s kind=%s, want %s %s", name, r.namespaced, r.kind, want.namespaced, want.kind)
		}
	}

	// The category groups all of Vessel's kinds for `kubectl get vessel`.
	inCategory := strings.Fields(k.ok("api-resources", "--categories=vessel", "-o", "name"))
	for _, want := range []string{"virtualmachines.vessel.dev", "virtualmachinesnapshots.vessel.dev", "virtualmachinerestores.vessel.dev"} {
		if !slices.Contains(inCategory, want) {
			t.Errorf("category vessel lacks %s: %v", want, inCategory)
		}
	}

	// Short names resolve, for a namespaced and a cluster-scoped kind.
	k.ok("get", "hv")
	k.ok("get", "vmsnap", "-n", "default")
}

func TestKubectlExplain(t *testing.T) {
	c := controlPlane(t)
	k := newKubectl(t, c, launcher.AdminKubeconfig)

	spec := oneLine(k.ok("explain", "vm.spec"))
	for _, want := range []string{
		"KIND: VirtualMachine",
		"VERSION: v1alpha1",
		"VirtualMachineSpec is the desired state of a virtual machine.",
		"runStrategy <string>",
		"cpus <integer> CPUs is the number of virtual CPUs. Defaults to 1.",
		"NodeName is the Hypervisor this VM is bound to.",
	} {
		if !strings.Contains(spec, want) {
			t.Errorf("kubectl explain vm.spec lacks %q:\n%s", want, spec)
		}
	}

	runStrategy := oneLine(k.ok("explain", "vm.spec.runStrategy"))
	for _, want := range []string{
		"FIELD: runStrategy <string>",
		"RunStrategy says when the guest should run: Always (default), RerunOnFailure, Manual, Halted or Once.",
		"The stop action turns Always into Halted",
		// The enum and each value's doc come from the RunStrategy type.
		"ENUM: Always Halted Manual Once RerunOnFailure",
		"`\"Halted\"` keeps the guest stopped.",
	} {
		if !strings.Contains(runStrategy, want) {
			t.Errorf("kubectl explain vm.spec.runStrategy lacks %q:\n%s", want, runStrategy)
		}
	}
}

// oneLine collapses kubectl's line wrapping and indentation.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func TestKubectlGetColumns(t *testing.T) {
	c := controlPlane(t)
	ns := newNamespace(t, c)
	k := newKubectl(t, c, launcher.AdminKubeconfig)
	k.okStdin(fmt.Sprintf(`
apiVersion: vessel.dev/v1alpha1
kind: VirtualMachine
metadata: {name: web, namespace: %s}
spec:
  runStrategy: Manual
  cpus: 2
  memory: 256Mi
  disks:
  - name: scratch
    blank: {size: 64Mi}
`, ns), "create", "-f", "-")

	assertTable(t, k.ok("get", "vm", "-n", ns),
		[]string{"NAME", "STATUS", "READY", "NODE", "IP", "AGE"},
		[]string{"web", "Pending", "False", "<none>", "<none>"})

	// What the agent would report shows in the columns.
	k.ok("patch", "vm", "web", "-n", ns, "--subresource=status", "--type=merge",
		"-p", `{"status":{"phase":"Running","interfaces":[{"name":"default","ipAddress":"10.0.2.15"}],"conditions":[{"type":"Ready","status":"True","reason":"GuestRunning","message":"the guest is running","lastTransitionTime":"2026-11-30T10:00:00Z"}]}}`)
	assertTable(t, k.ok("get", "vm", "-n", ns, "-o", "wide"),
		[]string{"NAME", "STATUS", "READY", "NODE", "IP", "CPU", "MEMORY", "RUNSTRATEGY", "AGE"},
		[]string{"web", "Running", "True", "<none>", "10.0.2.15", "2", "256Mi", "Manual"})
}

// assertTable checks a one-row `kubectl get` table: the header exactly, the
// row's leading cells (AGE, last, varies).
func assertTable(t *testing.T, out string, header, row []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a header and one row:\n%s", out)
	}
	if got := strings.Fields(lines[0]); !slices.Equal(got, header) {
		t.Errorf("header %q, want %q", got, header)
	}
	if got := strings.Fields(lines[1]); len(got) != len(row)+1 || !slices.Equal(got[:len(row)], row) {
		t.Errorf("row %q, want %q and an age", got, row)
	}
}

func TestKubectlGetCategory(t *testing.T) {
	c := controlPlane(t)
	ns := newNamespace(t, c)
	k := newKubectl(t, c, launcher.AdminKubeconfig)
	k.okStdin(fmt.Sprintf(`
apiVersion: vessel.dev/v1alpha1
kind: VirtualMachine
metadata: {name: db, namespace: %[1]s}
spec: {runStrategy: Halted}
---
apiVersion: vessel.dev/v1alpha1
kind: VirtualMachineSnapshot
metadata: {name: before-upgrade, namespace: %[1]s}
spec: {virtualMachineName: db}
`, ns), "create", "-f", "-")
	// A restore needs a snapshot ready to use: with no agent here, the
	// admin reports it taken.
	uid := k.ok("get", "vm", "db", "-n", ns, "-o", "jsonpath={.metadata.uid}")
	k.ok("patch", "vmsnap", "before-upgrade", "-n", ns, "--subresource=status", "--type=merge", "-p",
		fmt.Sprintf(`{"status":{"phase":"Succeeded","readyToUse":true,"virtualMachineUID":%q}}`, uid))
	k.okStdin(fmt.Sprintf(`
apiVersion: vessel.dev/v1alpha1
kind: VirtualMachineRestore
metadata: {name: rollback, namespace: %s}
spec: {virtualMachineName: db, snapshotName: before-upgrade}
`, ns), "create", "-f", "-")

	got := strings.Fields(k.ok("get", "vessel", "-n", ns, "-o", "name"))
	want := []string{
		"virtualmachine.vessel.dev/db",
		"virtualmachinerestore.vessel.dev/rollback",
		"virtualmachinesnapshot.vessel.dev/before-upgrade",
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("kubectl get vessel -o name = %q, want %q", got, want)
	}
	// The human-readable form prints each kind's own table.
	table := k.ok("get", "vessel", "-n", ns)
	for _, want := range []string{"STATUS", "VM", "PHASE", "SNAPSHOT", "before-upgrade"} {
		if !strings.Contains(table, want) {
			t.Errorf("kubectl get vessel lacks %q:\n%s", want, table)
		}
	}
}

func TestKubectlServerSideApply(t *testing.T) {
	c := controlPlane(t)
	ns := newNamespace(t, c)
	k := newKubectl(t, c, launcher.AdminKubeconfig)
	manifest := func(cpus int) string {
		return fmt.Sprintf(`
apiVersion: vessel.dev/v1alpha1
kind: VirtualMachine
metadata: {name: app, namespace: %s}
spec:
  runStrategy: Manual
  cpus: %d
  memory: 128Mi
  disks:
  - name: root
    blank: {size: 64Mi}
`, ns, cpus)
	}
	vms := vesselClient(t, c, launcher.AdminKubeconfig).VesselV1alpha1().VirtualMachines(ns)

	k.okStdin(manifest(1), "apply", "--server-side", "-f", "-")
	// Re-applying the same manifest as the same manager changes nothing.
	k.okStdin(manifest(1), "apply", "--server-side", "-f", "-")

	stderr := k.failsStdin(manifest(2), "apply", "--server-side", "--field-manager=tuner", "-f", "-")
	if !strings.Contains(stderr, "conflict") || !strings.Contains(stderr, `"kubectl"`) || !strings.Contains(stderr, ".spec.cpus") {
		t.Errorf("the second manager's apply should conflict with kubectl on .spec.cpus:\n%s", stderr)
	}
	if vm := getVM(t, vms, "app"); vm.Spec.CPUs != 1 {
		t.Errorf("after the refused apply: cpus = %d, want 1", vm.Spec.CPUs)
	}

	k.okStdin(manifest(2), "apply", "--server-side", "--field-manager=tuner", "--force-conflicts", "-f", "-")
	vm := getVM(t, vms, "app")
	if vm.Spec.CPUs != 2 {
		t.Errorf("after --force-conflicts: cpus = %d, want 2", vm.Spec.CPUs)
	}
	owners := map[string]bool{}
	for _, entry := range vm.ManagedFields {
		if entry.FieldsV1 != nil && strings.Contains(string(entry.FieldsV1.Raw), `"f:cpus"`) {
			owners[entry.Manager] = true
		}
	}
	if !owners["tuner"] || owners["kubectl"] {
		t.Errorf("spec.cpus owned by %v, want tuner alone", owners)
	}
}

func getVM(t *testing.T, vms vesselv1alpha1.VirtualMachineInterface, name string) *v1alpha1.VirtualMachine {
	t.Helper()
	vm, err := vms.Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

func TestKubectlPatchAndEdit(t *testing.T) {
	c := controlPlane(t)
	ns := newNamespace(t, c)
	k := newKubectl(t, c, launcher.AdminKubeconfig)
	vms := vesselClient(t, c, launcher.AdminKubeconfig).VesselV1alpha1().VirtualMachines(ns)
	if _, err := vms.Create(t.Context(), newVM(ns, "box", v1alpha1.RunStrategyManual), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	generation := getVM(t, vms, "box").Generation

	k.ok("patch", "vm", "box", "-n", ns, "--type=merge", "-p", `{"spec":{"cpus":2}}`)
	k.ok("patch", "vm", "box", "-n", ns, "--type=json", "-p",
		`[{"op":"replace","path":"/spec/memory","value":"256Mi"},`+
			`{"op":"add","path":"/spec/disks/-","value":{"name":"data","blank":{"size":"32Mi"}}}]`)

	// kubectl edit sends a JSON merge patch of what changed in the editor.
	editor := filepath.Join(t.TempDir(), "editor.sh")
	script := "#!/bin/sh\nsed -i 's/^  cpus: 2$/  cpus: 3/' \"$1\"\n"
	if err := os.WriteFile(editor, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	edit := *k
	edit.env = append(slices.Clone(k.env), "EDITOR="+editor, "KUBE_EDITOR="+editor)
	if out := edit.ok("edit", "vm", "box", "-n", ns); !strings.Contains(out, "edited") {
		t.Errorf("kubectl edit: %s", out)
	}

	vm := getVM(t, vms, "box")
	var disks []string
	for _, d := range vm.Spec.Disks {
		disks = append(disks, d.Name)
	}
	if vm.Spec.CPUs != 3 || vm.Spec.Memory.String() != "256Mi" || !slices.Equal(disks, []string{"scratch", "data"}) {
		t.Errorf("after patches and edit: cpus=%d memory=%s disks=%v, want 3 256Mi [scratch data]", vm.Spec.CPUs, vm.Spec.Memory.String(), disks)
	}
	if vm.Generation != generation+3 {
		t.Errorf("generation %d, want %d: each spec change bumps it", vm.Generation, generation+3)
	}

	// Validation answers with the field path.
	stderr := k.fails("patch", "vm", "box", "-n", ns, "--type=merge", "-p", `{"spec":{"cpus":-1}}`)
	if !strings.Contains(stderr, "spec.cpus") {
		t.Errorf("an invalid patch should name spec.cpus:\n%s", stderr)
	}
	// Status is not writable through the main resource, only through
	// its subresource.
	k.ok("patch", "vm", "box", "-n", ns, "--type=merge", "-p", `{"status":{"phase":"Running"}}`)
	if phase := getVM(t, vms, "box").Status.Phase; phase != v1alpha1.VirtualMachinePending {
		t.Errorf("status.phase = %s after a patch of the main resource, want Pending", phase)
	}
	k.ok("patch", "vm", "box", "-n", ns, "--subresource=status", "--type=merge", "-p", `{"status":{"phase":"Running"}}`)
	if phase := getVM(t, vms, "box").Status.Phase; phase != v1alpha1.VirtualMachineRunning {
		t.Errorf("status.phase = %s after a patch of the status subresource, want Running", phase)
	}
}

func TestKubectlWaitAndFieldSelector(t *testing.T) {
	c := controlPlane(t)
	ns := newNamespace(t, c)
	k := newKubectl(t, c, launcher.AdminKubeconfig)
	vms := vesselClient(t, c, launcher.AdminKubeconfig).VesselV1alpha1().VirtualMachines(ns)
	for _, name := range []string{"idle", "busy"} {
		if _, err := vms.Create(t.Context(), newVM(ns, name, v1alpha1.RunStrategyManual), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	k.ok("wait", "vm/idle", "-n", ns, "--for=jsonpath={.status.phase}=Pending", "--timeout=30s")
	k.ok("patch", "vm", "busy", "-n", ns, "--subresource=status", "--type=merge", "-p", `{"status":{"phase":"Running"}}`)
	k.ok("wait", "vm/busy", "-n", ns, "--for=jsonpath={.status.phase}=Running", "--timeout=30s")

	for selector, want := range map[string][]string{
		"status.phase=Pending":  {"virtualmachine.vessel.dev/idle"},
		"status.phase=Running":  {"virtualmachine.vessel.dev/busy"},
		"status.phase!=Running": {"virtualmachine.vessel.dev/idle"},
		"spec.nodeName=":        {"virtualmachine.vessel.dev/busy", "virtualmachine.vessel.dev/idle"},
		"metadata.name=busy":    {"virtualmachine.vessel.dev/busy"},
	} {
		got := strings.Fields(k.ok("get", "vm", "-n", ns, "--field-selector", selector, "-o", "name"))
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("--field-selector %s: %q, want %q", selector, got, want)
		}
	}
	stderr := k.fails("get", "vm", "-n", ns, "--field-selector", "spec.cpus=1")
	if !strings.Contains(stderr, "not supported") {
		t.Errorf("an unsupported field selector should be refused:\n%s", stderr)
	}
}

func TestKubectlDelete(t *testing.T) {
	c := controlPlane(t)
	ns := newNamespace(t, c)
	k := newKubectl(t, c, launcher.AdminKubeconfig)
	vms := vesselClient(t, c, launcher.AdminKubeconfig).VesselV1alpha1().VirtualMachines(ns)
	for _, name := range []string{"one", "two", "three"} {
		if _, err := vms.Create(t.Context(), newVM(ns, name, v1alpha1.RunStrategyAlways), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// An unbound VM has no node-cleanup finalizer: it goes at once, and
	// kubectl's wait for the deletion returns at once too.
	begin := time.Now()
	if out := k.ok("delete", "vm", "one", "-n", ns); !strings.Contains(out, `"one" deleted`) {
		t.Errorf("kubectl delete: %s", out)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("kubectl delete of an unbound VM took %v", took)
	}
	if stderr := k.fails("get", "vm", "one", "-n", ns); !strings.Contains(stderr, "NotFound") && !strings.Contains(stderr, "not found") {
		t.Errorf("the deleted VM is still there: %s", stderr)
	}

	k.ok("delete", "vm", "--all", "-n", ns)
	_, stderr, err := k.run("", "get", "vm", "-n", ns)
	if err != nil || !strings.Contains(stderr, "No resources found") {
		t.Errorf("after kubectl delete --all: err=%v %s", err, stderr)
	}
}

// TestManifestsDryRun applies the kustomizations a real cluster and the
// local control plane use, with server-side dry run: every object passes
// kube-apiserver's validation and admission (privileged agents allowed as
// on kubeadm clusters), and nothing is changed.
func TestManifestsDryRun(t *testing.T) {
	c := controlPlane(t)
	k := newKubectl(t, c, launcher.AdminKubeconfig)
	root, err := launcher.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for overlay, want := range map[string][]string{
		"cluster": {"deployment.apps/vessel-apiserver", "statefulset.apps/vessel-etcd", "daemonset.apps/vessel-agent", "apiservice.apiregistration.k8s.io/v1alpha1.vessel.dev"},
		"local":   {"endpointslice.discovery.k8s.io/vessel-apiserver-local", "apiservice.apiregistration.k8s.io/v1alpha1.vessel.dev"},
	} {
		out := k.ok("apply", "--dry-run=server", "-k", filepath.Join(root, "manifests", overlay))
		for _, object := range want {
			if !strings.Contains(out, object+" ") {
				t.Errorf("manifests/%s: %s not applied:\n%s", overlay, object, out)
			}
		}
		if !strings.Contains(out, "(server dry run)") {
			t.Errorf("manifests/%s: not a server dry run:\n%s", overlay, out)
		}
	}
	if _, _, err := k.run("", "get", "deployment", "vessel-apiserver", "-n", "vessel-system"); err == nil {
		t.Error("the dry run created the vessel-apiserver Deployment")
	}
}
