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
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
)

// imageRoot is the only directory the validation test server allows
// hostPath disks under.
const (
	imageRoot    = "/srv/vessel/images" // shared: read-only to VMs
	writableRoot = "/srv/vessel/vm"     // divided per namespace
)

// wantInvalid fails t unless err is a 422 Invalid whose causes and message
// name every field in fields.
func wantInvalid(t *testing.T, err error, fields ...string) metav1.Status {
	t.Helper()
	if !apierrors.IsInvalid(err) {
		t.Fatalf("got %v, want 422 Invalid", err)
	}
	st := err.(apierrors.APIStatus).Status()
	for _, f := range fields {
		wantCause(t, st, f)
		if !strings.Contains(st.Message, f) {
			t.Errorf("message %q does not name %s", st.Message, f)
		}
	}
	return st
}

func TestValidation(t *testing.T) {
	s := apiservertesting.Start(t, apiservertesting.Options{AllowedHostPathRoots: []string{imageRoot}, WritableHostPathRoots: []string{writableRoot}, DisableControllers: true})
	blank := func(name string) v1alpha1.Disk {
		return v1alpha1.Disk{Name: name, Blank: &v1alpha1.BlankSource{Size: resource.MustParse("1Gi")}}
	}
	hostPath := func(path string) v1alpha1.Disk {
		return v1alpha1.Disk{Name: "root", HostPath: &v1alpha1.HostPathSource{Path: path}}
	}

	for _, tc := range []struct {
		name   string
		change func(*v1alpha1.VirtualMachine)
		fields []string
	}{
		{"negative memory", func(vm *v1alpha1.VirtualMachine) { vm.Spec.Memory = resource.MustParse("-1Mi") }, []string{"spec.memory"}},
		{"too little memory", func(vm *v1alpha1.VirtualMachine) { vm.Spec.Memory = resource.MustParse("16Mi") }, []string{"spec.memory"}},
		{"negative cpus", func(vm *v1alpha1.VirtualMachine) { vm.Spec.CPUs = -1 }, []string{"spec.cpus"}},
		{"too many cpus", func(vm *v1alpha1.VirtualMachine) { vm.Spec.CPUs = 1000 }, []string{"spec.cpus"}},
		{"unknown runStrategy", func(vm *v1alpha1.VirtualMachine) { vm.Spec.RunStrategy = "Sometimes" }, []string{"spec.runStrategy"}},
		{"unknown firmware", func(vm *v1alpha1.VirtualMachine) { vm.Spec.Firmware = "coreboot" }, []string{"spec.firmware"}},
		{"duplicate disk names", func(vm *v1alpha1.VirtualMachine) { vm.Spec.Disks = []v1alpha1.Disk{blank("root"), blank("root")} }, []string{"spec.disks[1].name"}},
		{"disk without a source", func(vm *v1alpha1.VirtualMachine) { vm.Spec.Disks = []v1alpha1.Disk{{Name: "root"}} }, []string{"spec.disks[0]"}},
		{"hostPath outside the roots", func(vm *v1alpha1.VirtualMachine) { vm.Spec.Disks = []v1alpha1.Disk{hostPath("/etc/shadow")} }, []string{"spec.disks[0].hostPath.path"}},
		{"hostPath escaping a root", func(vm *v1alpha1.VirtualMachine) {
			vm.Spec.Disks = []v1alpha1.Disk{hostPath(imageRoot + "/../../../etc/shadow")}
		}, []string{"spec.disks[0].hostPath.path"}},
		{"hostPath that is the root itself", func(vm *v1alpha1.VirtualMachine) { vm.Spec.Disks = []v1alpha1.Disk{hostPath(imageRoot)} }, []string{"spec.disks[0].hostPath.path"}},
		{"writable hostPath under the shared root", func(vm *v1alpha1.VirtualMachine) {
			vm.Spec.Disks = []v1alpha1.Disk{hostPath(imageRoot + "/vessel-guest/vmlinuz")}
		}, []string{"spec.disks[0].readOnly"}},
		{"hostPath in another namespace's directory", func(vm *v1alpha1.VirtualMachine) {
			vm.Spec.Disks = []v1alpha1.Disk{hostPath(writableRoot + "/someone-else/data.img")}
		}, []string{"spec.disks[0].hostPath.path"}},
		{"disk format that is neither raw nor qcow2", func(vm *v1alpha1.VirtualMachine) {
			vm.Spec.Disks = []v1alpha1.Disk{{Name: "root", Image: &v1alpha1.ImageSource{URL: "https://images.example.com/a.vmdk", SHA256: strings.Repeat("a", 64), Format: "vmdk"}}}
		}, []string{"spec.disks[0].image.format"}},
		{"bridge interface without a bridge", func(vm *v1alpha1.VirtualMachine) {
			vm.Spec.Interfaces = []v1alpha1.Interface{{Name: "eth0", Type: v1alpha1.InterfaceTypeBridge}}
		}, []string{"spec.interfaces[0].bridge"}},
		{"grace period too long", func(vm *v1alpha1.VirtualMachine) { vm.Spec.TerminationGracePeriodSeconds = ptr(int64(86400)) }, []string{"spec.terminationGracePeriodSeconds"}},
		{"name that is not a DNS label", func(vm *v1alpha1.VirtualMachine) { vm.Name = "Web_1" }, []string{"metadata.name"}},
		{"every error at once", func(vm *v1alpha1.VirtualMachine) {
			vm.Spec.CPUs = -1
			vm.Spec.RunStrategy = "Sometimes"
			vm.Spec.Disks = []v1alpha1.Disk{blank("root"), blank("root")}
		}, []string{"spec.cpus", "spec.runStrategy", "spec.disks[1].name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := unique(t)
			vm := newVM("a")
			tc.change(vm)
			_, err := vms(s, ns).Create(t.Context(), vm, metav1.CreateOptions{})
			st := wantInvalid(t, err, tc.fields...)
			if st.Details == nil || st.Details.Kind != "VirtualMachine" || st.Details.Group != "vessel.dev" {
				t.Errorf("error details %+v do not name the kind", st.Details)
			}
			list, err := vms(s, ns).List(t.Context(), metav1.ListOptions{})
			if err != nil || len(list.Items) != 0 {
				t.Errorf("list after a refused create: %v, %v; want nothing stored", vmNames(list), err)
			}
		})
	}

	t.Run("image URL credentials are not echoed", func(t *testing.T) {
		vm := newVM("a")
		vm.Spec.Disks = []v1alpha1.Disk{{Name: "root", Image: &v1alpha1.ImageSource{
			URL: "https://alice:s3cret@images.example.com/disk.qcow2", SHA256: strings.Repeat("a", 64),
		}}}
		_, err := vms(s, unique(t)).Create(t.Context(), vm, metav1.CreateOptions{})
		st := wantInvalid(t, err, "spec.disks[0].image.url")
		if strings.Contains(st.Message, "s3cret") {
			t.Errorf("error message leaks the password: %s", st.Message)
		}
	})

	t.Run("read-only hostPath under the shared root is accepted, declared raw", func(t *testing.T) {
		vm := newVM("a")
		vm.Spec.Disks = []v1alpha1.Disk{hostPath(imageRoot + "/debian.img")}
		vm.Spec.Disks[0].ReadOnly = true
		created := createVM(t, s, unique(t), vm)
		// The default format is stored: the object shows what QEMU is told.
		if f := created.Spec.Disks[0].HostPath.Format; f != v1alpha1.DiskFormatRaw {
			t.Errorf("stored format %q, want raw", f)
		}
	})

	t.Run("writable hostPath in the namespace's own directory is accepted", func(t *testing.T) {
		ns := unique(t)
		vm := newVM("a")
		vm.Spec.Disks = []v1alpha1.Disk{hostPath(writableRoot + "/" + ns + "/data.qcow2")}
		vm.Spec.Disks[0].HostPath.Format = v1alpha1.DiskFormatQCOW2
		createVM(t, s, ns, vm)
	})

	t.Run("an update that makes the VM invalid changes nothing", func(t *testing.T) {
		ns := unique(t)
		vm := createVM(t, s, ns, newVM("a"))
		vm.Spec.Memory = resource.MustParse("-1Mi")
		vm.Spec.Disks = []v1alpha1.Disk{hostPath("/etc/shadow")}
		_, err := vms(s, ns).Update(t.Context(), vm, metav1.UpdateOptions{})
		wantInvalid(t, err, "spec.memory", "spec.disks[0].hostPath.path")
		if got := getVM(t, s, ns, "a"); got.Spec.Memory.String() != "128Mi" || len(got.Spec.Disks) != 0 {
			t.Errorf("refused update was stored: %+v", got.Spec)
		}
	})

	t.Run("invalid snapshots, restores and hypervisors", func(t *testing.T) {
		ns := unique(t)
		c := s.Client.VesselV1alpha1()
		_, err := c.VirtualMachineSnapshots(ns).Create(t.Context(), &v1alpha1.VirtualMachineSnapshot{
			ObjectMeta: metav1.ObjectMeta{Name: "snap"},
			Spec:       v1alpha1.VirtualMachineSnapshotSpec{DeletionPolicy: "Sometimes"},
		}, metav1.CreateOptions{})
		wantInvalid(t, err, "spec.virtualMachineName", "spec.deletionPolicy")

		_, err = c.VirtualMachineRestores(ns).Create(t.Context(), &v1alpha1.VirtualMachineRestore{
			ObjectMeta: metav1.ObjectMeta{Name: "restore"},
			Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: "vm-a"},
		}, metav1.CreateOptions{})
		wantInvalid(t, err, "spec.snapshotName")

		_, err = c.Hypervisors().Create(t.Context(), &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: "Not_A_Host"}}, metav1.CreateOptions{})
		wantInvalid(t, err, "metadata.name")
	})
}
