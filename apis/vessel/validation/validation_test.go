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

package validation

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
)

const testSHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// testOpts: one shared root (read-only to VMs), one writable root,
// divided per namespace, and two allowed bridges.
var testOpts = Options{
	AllowedHostPathRoots:  []string{"/var/lib/vessel/images"},
	WritableHostPathRoots: []string{"/srv/vm"},
	AllowedBridges:        []string{"br0", "br-0123456789ab"},
}

var testTime = metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))

func ptr[T any](v T) *T { return &v }

// validVM is a defaulted VM that uses every feature; each table case breaks one thing.
func validVM() *vessel.VirtualMachine {
	return &vessel.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{
			Name:            "web-1",
			Namespace:       "default",
			ResourceVersion: "7",
			Generation:      2,
			Labels:          map[string]string{"app": "web"},
			Finalizers:      []string{vessel.FinalizerNodeCleanup},
		},
		Spec: vessel.VirtualMachineSpec{
			RunStrategy: vessel.RunStrategyAlways,
			CPUs:        2,
			Memory:      resource.MustParse("1Gi"),
			Firmware:    vessel.FirmwareUEFI,
			Kernel: &vessel.KernelBoot{
				Kernel:  vessel.FileSource{HostPath: &vessel.HostPathSource{Path: "/var/lib/vessel/images/vmlinuz"}},
				Initrd:  &vessel.FileSource{Image: &vessel.ImageSource{URL: "https://images.example.com/initrd.img", SHA256: testSHA256}},
				Cmdline: "console=ttyS0 root=/dev/vda rw",
			},
			Disks: []vessel.Disk{
				{Name: "root", Bus: vessel.DiskBusVirtio, Image: &vessel.ImageSource{URL: "https://images.example.com:8443/debian-13.qcow2?v=1", SHA256: testSHA256, Format: vessel.DiskFormatQCOW2}},
				{Name: "data", Bus: vessel.DiskBusSCSI, Blank: &vessel.BlankSource{Size: resource.MustParse("10Gi")}},
				{Name: "seed", Bus: vessel.DiskBusSATA, CloudInit: &vessel.CloudInitSource{UserData: "#cloud-config\nhostname: web-1\n", NetworkData: "version: 2\n"}},
				{Name: "scratch", Bus: vessel.DiskBusSATA, HostPath: &vessel.HostPathSource{Path: "/srv/vm/default/scratch.img", Format: vessel.DiskFormatRaw}},
			},
			Interfaces: []vessel.Interface{
				{Name: "default", Type: vessel.InterfaceTypeUser},
				{Name: "lan", Type: vessel.InterfaceTypeBridge, Bridge: "br0", MACAddress: "52:54:00:12:34:56"},
			},
			NodeSelector:                  map[string]string{"vessel.dev/zone": "a", "kvm": "true"},
			TerminationGracePeriodSeconds: ptr(int64(30)),
			PowerAction:                   &vessel.PowerAction{Type: vessel.PowerActionStart, ID: 3, RequestedAt: testTime, GracePeriodSeconds: ptr(int64(0))},
		},
	}
}

// boundVM is validVM after the scheduler bound it.
func boundVM() *vessel.VirtualMachine {
	vm := validVM()
	vm.Spec.NodeName = "hv-1.example.com"
	return vm
}

func validVMStatus() vessel.VirtualMachineStatus {
	return vessel.VirtualMachineStatus{
		Phase: vessel.VirtualMachineRunning,
		Conditions: []metav1.Condition{
			{Type: vessel.VirtualMachineConditionScheduled, Status: metav1.ConditionTrue, Reason: "Bound", LastTransitionTime: testTime},
			{Type: vessel.VirtualMachineConditionReady, Status: metav1.ConditionTrue, Reason: "Running", LastTransitionTime: testTime, ObservedGeneration: 2},
		},
		ObservedGeneration:    2,
		ObservedPowerActionID: 3,
		NodeName:              "hv-1.example.com",
		StartedAt:             &testTime,
		StopReason:            StopReasonGuestShutdown,
		RestartCount:          3,
		NextStartTime:         &testTime,
		Interfaces: []vessel.InterfaceStatus{
			{Name: "default", MACAddress: "52:54:00:aa:bb:cc", IPAddress: "10.0.2.15"},
			{Name: "lan", MACAddress: "52:54:00:12:34:56", IPAddress: "2001:db8::15"},
		},
		Disks: []vessel.DiskStatus{
			{Name: "root", Phase: vessel.DiskReady},
			{Name: "data", Phase: vessel.DiskImporting, Progress: "45%"},
		},
		ConsoleLogBytes: 65536,
		Snapshots:       []string{"web-1-before-upgrade", "web-1.nightly"},
	}
}

func validSnapshot() *vessel.VirtualMachineSnapshot {
	return &vessel.VirtualMachineSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1.before-upgrade", Namespace: "default", ResourceVersion: "3"},
		Spec: vessel.VirtualMachineSnapshotSpec{
			VirtualMachineName: "web-1",
			IncludeMemory:      ptr(true),
			DeletionPolicy:     vessel.SnapshotDeletionPolicyDelete,
		},
	}
}

func validRestore() *vessel.VirtualMachineRestore {
	return &vessel.VirtualMachineRestore{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1.restore-1", Namespace: "default", ResourceVersion: "5"},
		Spec:       vessel.VirtualMachineRestoreSpec{VirtualMachineName: "web-1", SnapshotName: "web-1.before-upgrade"},
	}
}

func validHypervisor() *vessel.Hypervisor {
	return &vessel.Hypervisor{
		ObjectMeta: metav1.ObjectMeta{Name: "hv-1.example.com", ResourceVersion: "11", Labels: map[string]string{"vessel.dev/zone": "a"}},
		Spec:       vessel.HypervisorSpec{Unschedulable: true},
		Status: vessel.HypervisorStatus{
			Capacity:          vessel.HypervisorResources{CPUs: 16, Memory: resource.MustParse("64Gi"), VMs: 110},
			Allocatable:       vessel.HypervisorResources{CPUs: 14, Memory: resource.MustParse("60Gi"), VMs: 110},
			Allocated:         vessel.HypervisorResources{CPUs: 4, Memory: resource.MustParse("4Gi"), VMs: 2},
			DaemonEndpoint:    "10.0.0.5:10250",
			LibvirtVersion:    "11.3.0",
			QEMUVersion:       "10.0.2",
			KVM:               true,
			LastHeartbeatTime: &testTime,
			Conditions: []metav1.Condition{
				{Type: vessel.HypervisorConditionReady, Status: metav1.ConditionTrue, Reason: "Heartbeat", LastTransitionTime: testTime},
			},
		},
	}
}

// want is one expected error: its full field path and type.
type want struct {
	field string
	typ   field.ErrorType
}

func invalid(path string) want   { return want{path, field.ErrorTypeInvalid} }
func required(path string) want  { return want{path, field.ErrorTypeRequired} }
func forbidden(path string) want { return want{path, field.ErrorTypeForbidden} }
func duplicate(path string) want { return want{path, field.ErrorTypeDuplicate} }
func notSupported(p string) want { return want{p, field.ErrorTypeNotSupported} }
func tooLong(path string) want   { return want{path, field.ErrorTypeTooLong} }
func tooMany(path string) want   { return want{path, field.ErrorTypeTooMany} }

// expectErrors asserts that errs holds exactly the wanted (path, type)
// pairs, in any order, and that every error explains itself.
func expectErrors(t *testing.T, errs field.ErrorList, wants ...want) {
	t.Helper()
	got := make([]string, 0, len(errs))
	for _, err := range errs {
		got = append(got, fmt.Sprintf("%s %s", err.Field, err.Type))
		if err.Type != field.ErrorTypeRequired && err.Type != field.ErrorTypeDuplicate && err.Type != field.ErrorTypeNotSupported && err.Detail == "" {
			t.Errorf("error without a reason: %v", err)
		}
	}
	wanted := make([]string, 0, len(wants))
	for _, w := range wants {
		wanted = append(wanted, fmt.Sprintf("%s %s", w.field, w.typ))
	}
	sort.Strings(got)
	sort.Strings(wanted)
	if strings.Join(got, "\n") != strings.Join(wanted, "\n") {
		t.Errorf("errors:\n  got  %q\n  want %q\nfull errors:\n%s", got, wanted, errs.ToAggregate())
	}
}

func TestValidateVirtualMachineAcceptsValid(t *testing.T) {
	expectErrors(t, ValidateVirtualMachine(validVM(), testOpts))

	for _, rs := range supportedRunStrategies {
		vm := validVM()
		vm.Spec.RunStrategy = rs
		expectErrors(t, ValidateVirtualMachine(vm, testOpts))
	}

	bios := validVM()
	bios.Spec.Firmware = vessel.FirmwareBIOS
	bios.Spec.Kernel = nil
	bios.Spec.Memory = resource.MustParse(MinMemory)
	bios.Spec.CPUs = MaxCPUs
	bios.Spec.PowerAction = nil
	bios.Spec.TerminationGracePeriodSeconds = ptr(int64(MaxGracePeriodSeconds))
	expectErrors(t, ValidateVirtualMachine(bios, testOpts))

	decimal := validVM()
	decimal.Spec.Memory = resource.MustParse("2G")
	decimal.Spec.Disks[1].Blank.Size = resource.MustParse(MaxBlankDiskSize)
	expectErrors(t, ValidateVirtualMachine(decimal, testOpts))

	// A VM without disks, interfaces or a kernel is odd but valid: it may
	// boot from the network, and its spec is a desired state, not a promise.
	bare := validVM()
	bare.Spec.Kernel = nil
	bare.Spec.Disks = nil
	bare.Spec.Interfaces = nil
	bare.Spec.NodeSelector = nil
	expectErrors(t, ValidateVirtualMachine(bare, Options{}))

	rootDir := validVM()
	rootDir.Spec.Disks[3].HostPath.Path = "/dev/vg0/web-1"
	rootDir.Spec.Disks[3].ReadOnly = true
	expectErrors(t, ValidateVirtualMachine(rootDir, Options{AllowedHostPathRoots: []string{"/"}, AllowedBridges: testOpts.AllowedBridges}))

	// Read-only disks may come from a shared root, and from the VM's own
	// namespace directory of a writable root.
	sharedDisk := validVM()
	sharedDisk.Spec.Disks[3].HostPath = &vessel.HostPathSource{Path: "/var/lib/vessel/images/base.qcow2", Format: vessel.DiskFormatQCOW2}
	sharedDisk.Spec.Disks[3].ReadOnly = true
	expectErrors(t, ValidateVirtualMachine(sharedDisk, testOpts))
	ownReadOnly := validVM()
	ownReadOnly.Spec.Disks[3].ReadOnly = true
	expectErrors(t, ValidateVirtualMachine(ownReadOnly, testOpts))
	// A kernel in the VM's namespace directory: QEMU only reads it.
	ownKernel := validVM()
	ownKernel.Spec.Kernel.Kernel.HostPath.Path = "/srv/vm/default/vmlinuz"
	expectErrors(t, ValidateVirtualMachine(ownKernel, testOpts))

	maxed := validVM()
	maxed.Spec.Kernel.Cmdline = strings.Repeat("a", MaxCmdlineBytes)
	maxed.Spec.Disks[2].CloudInit.UserData = strings.Repeat("u", MaxCloudInitBytes-len(maxed.Spec.Disks[2].CloudInit.NetworkData))
	maxed.Spec.Interfaces[1].Bridge = "br-0123456789ab"
	expectErrors(t, ValidateVirtualMachine(maxed, testOpts))
}

func TestValidateVirtualMachineRejectsInvalid(t *testing.T) {
	noRoots := Options{}
	cases := []struct {
		name   string
		opts   *Options
		mutate func(vm *vessel.VirtualMachine)
		want   []want
	}{
		// metadata
		{"name with uppercase", nil, func(vm *vessel.VirtualMachine) { vm.Name = "Web-1" }, []want{invalid("metadata.name")}},
		{"name longer than 63", nil, func(vm *vessel.VirtualMachine) { vm.Name = strings.Repeat("a", 64) }, []want{invalid("metadata.name")}},
		{"name with a dot is not a DNS label", nil, func(vm *vessel.VirtualMachine) { vm.Name = "web.1" }, []want{invalid("metadata.name")}},
		{"no namespace", nil, func(vm *vessel.VirtualMachine) { vm.Namespace = "" }, []want{required("metadata.namespace")}},
		{"bad label", nil, func(vm *vessel.VirtualMachine) { vm.Labels["bad key!"] = "x" }, []want{invalid("metadata.labels")}},

		// run strategy, size, firmware
		{"empty run strategy after defaulting", nil, func(vm *vessel.VirtualMachine) { vm.Spec.RunStrategy = "" }, []want{required("spec.runStrategy")}},
		{"unknown run strategy", nil, func(vm *vessel.VirtualMachine) { vm.Spec.RunStrategy = "Sometimes" }, []want{notSupported("spec.runStrategy")}},
		{"zero cpus", nil, func(vm *vessel.VirtualMachine) { vm.Spec.CPUs = 0 }, []want{invalid("spec.cpus")}},
		{"negative cpus", nil, func(vm *vessel.VirtualMachine) { vm.Spec.CPUs = -4 }, []want{invalid("spec.cpus")}},
		{"too many cpus", nil, func(vm *vessel.VirtualMachine) { vm.Spec.CPUs = MaxCPUs + 1 }, []want{invalid("spec.cpus")}},
		{"negative memory", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Memory = resource.MustParse("-1Gi") }, []want{invalid("spec.memory")}},
		{"zero memory", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Memory = resource.Quantity{} }, []want{invalid("spec.memory")}},
		{"memory below the smallest bootable guest", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Memory = resource.MustParse("64Mi") }, []want{invalid("spec.memory")}},
		{"memory above 1Ti", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Memory = resource.MustParse("1025Gi") }, []want{invalid("spec.memory")}},
		{"memory with a fraction of a byte", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Memory = resource.MustParse("134217728500m") }, []want{invalid("spec.memory")}},
		{"empty firmware", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Firmware = "" }, []want{required("spec.firmware")}},
		{"unknown firmware", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Firmware = "CSM" }, []want{notSupported("spec.firmware")}},

		// kernel boot
		{"kernel without a source", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Kernel.Kernel = vessel.FileSource{} }, []want{required("spec.kernel.kernel")}},
		{"kernel with two sources", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Kernel.Kernel.Image = &vessel.ImageSource{URL: "https://images.example.com/vmlinuz", SHA256: testSHA256}
		}, []want{forbidden("spec.kernel.kernel.hostPath")}},
		{"initrd without a source", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Kernel.Initrd = &vessel.FileSource{} }, []want{required("spec.kernel.initrd")}},
		{"initrd with a bad checksum", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Kernel.Initrd.Image.SHA256 = "abc" }, []want{invalid("spec.kernel.initrd.image.sha256")}},
		{"kernel hostPath outside the roots", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Kernel.Kernel.HostPath.Path = "/boot/vmlinuz" }, []want{forbidden("spec.kernel.kernel.hostPath.path")}},
		{"kernel in another namespace's directory", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Kernel.Kernel.HostPath.Path = "/srv/vm/team-b/vmlinuz" }, []want{forbidden("spec.kernel.kernel.hostPath.path")}},
		{"kernel hostPath with a format", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Kernel.Kernel.HostPath.Format = vessel.DiskFormatRaw }, []want{forbidden("spec.kernel.kernel.hostPath.format")}},
		{"initrd image with a format", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Kernel.Initrd.Image.Format = vessel.DiskFormatQCOW2 }, []want{forbidden("spec.kernel.initrd.image.format")}},
		{"cmdline too long", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Kernel.Cmdline = strings.Repeat("a", MaxCmdlineBytes+1) }, []want{tooLong("spec.kernel.cmdline")}},
		{"cmdline with a newline", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Kernel.Cmdline = "console=ttyS0\ninit=/bin/sh" }, []want{invalid("spec.kernel.cmdline")}},
		{"cmdline with NUL", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Kernel.Cmdline = "console=ttyS0\x00quiet" }, []want{invalid("spec.kernel.cmdline")}},
		{"cmdline not UTF-8", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Kernel.Cmdline = "console=\xff" }, []want{invalid("spec.kernel.cmdline")}},

		// disks
		{"too many disks", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks = nil
			for i := 0; i <= MaxDisks; i++ {
				vm.Spec.Disks = append(vm.Spec.Disks, vessel.Disk{Name: fmt.Sprintf("d%d", i), Bus: vessel.DiskBusVirtio, Blank: &vessel.BlankSource{Size: resource.MustParse("1Gi")}})
			}
		}, []want{tooMany("spec.disks")}},
		{"disk without a name", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[1].Name = "" }, []want{required("spec.disks[1].name")}},
		{"disk name not a DNS label", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[1].Name = "Data_1" }, []want{invalid("spec.disks[1].name")}},
		{"duplicate disk names", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[3].Name = "root" }, []want{duplicate("spec.disks[3].name")}},
		{"unknown disk bus", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Bus = "ide" }, []want{notSupported("spec.disks[0].bus")}},
		{"empty disk bus after defaulting", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Bus = "" }, []want{required("spec.disks[0].bus")}},
		{"disk without a source", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[1].Blank = nil }, []want{required("spec.disks[1]")}},
		{"disk with two sources", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks[0].Blank = &vessel.BlankSource{Size: resource.MustParse("1Gi")}
		}, []want{forbidden("spec.disks[0].blank")}},
		{"disk with every source", nil, func(vm *vessel.VirtualMachine) {
			d := &vm.Spec.Disks[0]
			d.HostPath = &vessel.HostPathSource{Path: "/srv/vm/a.img"}
			d.Blank = &vessel.BlankSource{Size: resource.MustParse("1Gi")}
			d.CloudInit = &vessel.CloudInitSource{}
		}, []want{forbidden("spec.disks[0].hostPath"), forbidden("spec.disks[0].blank"), forbidden("spec.disks[0].cloudInit")}},

		// image sources
		{"unparsable URL", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Image.URL = "https://images example.com/a.qcow2" }, []want{invalid("spec.disks[0].image.url")}},
		{"ftp URL", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Image.URL = "ftp://images.example.com/a.qcow2" }, []want{invalid("spec.disks[0].image.url")}},
		{"file URL", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Image.URL = "file:///etc/shadow" }, []want{invalid("spec.disks[0].image.url"), invalid("spec.disks[0].image.url")}},
		{"URL with user info", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks[0].Image.URL = "https://admin:hunter2@images.example.com/a.qcow2"
		}, []want{invalid("spec.disks[0].image.url")}},
		{"URL without a host", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Image.URL = "https:///a.qcow2" }, []want{invalid("spec.disks[0].image.url")}},
		{"relative URL", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Image.URL = "images/a.qcow2" }, []want{invalid("spec.disks[0].image.url"), invalid("spec.disks[0].image.url")}},
		{"empty URL", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Image.URL = "" }, []want{required("spec.disks[0].image.url")}},
		{"URL too long", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks[0].Image.URL = "https://images.example.com/" + strings.Repeat("a", MaxURLLength)
		}, []want{tooLong("spec.disks[0].image.url")}},
		{"missing sha256", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Image.SHA256 = "" }, []want{required("spec.disks[0].image.sha256")}},
		{"uppercase sha256", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Image.SHA256 = strings.ToUpper(testSHA256) }, []want{invalid("spec.disks[0].image.sha256")}},
		{"sha256 not hex", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Image.SHA256 = strings.Repeat("g", 64) }, []want{invalid("spec.disks[0].image.sha256")}},
		{"sha256 too short", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Image.SHA256 = testSHA256[:63] }, []want{invalid("spec.disks[0].image.sha256")}},
		// Formats are declared, never probed (defaulted to raw).
		{"image without a format after defaulting", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Image.Format = "" }, []want{required("spec.disks[0].image.format")}},
		{"image format vmdk", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Image.Format = "vmdk" }, []want{notSupported("spec.disks[0].image.format")}},
		{"image format auto", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[0].Image.Format = "auto" }, []want{notSupported("spec.disks[0].image.format")}},
		{"hostPath without a format after defaulting", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[3].HostPath.Format = "" }, []want{required("spec.disks[3].hostPath.format")}},
		{"hostPath format QCOW2 (case matters)", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[3].HostPath.Format = "QCOW2" }, []want{notSupported("spec.disks[3].hostPath.format")}},

		// host paths
		{"hostPath outside the allowed roots", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[3].HostPath.Path = "/etc/shadow" }, []want{forbidden("spec.disks[3].hostPath.path")}},
		// Shared roots are read-only: today's quick-start kernel must not
		// be a disk any tenant can overwrite.
		{"writable hostPath under a shared root", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks[3].HostPath.Path = "/var/lib/vessel/images/vessel-guest/vmlinuz"
		}, []want{invalid("spec.disks[3].readOnly")}},
		{"writable hostPath in another namespace's directory", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[3].HostPath.Path = "/srv/vm/team-b/data.img" }, []want{forbidden("spec.disks[3].hostPath.path")}},
		{"read-only hostPath in another namespace's directory", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks[3].HostPath.Path = "/srv/vm/team-b/data.img"
			vm.Spec.Disks[3].ReadOnly = true
		}, []want{forbidden("spec.disks[3].hostPath.path")}},
		{"hostPath directly in a writable root", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[3].HostPath.Path = "/srv/vm/data.img" }, []want{forbidden("spec.disks[3].hostPath.path")}},
		{"hostPath that is the namespace's directory", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[3].HostPath.Path = "/srv/vm/default" }, []want{forbidden("spec.disks[3].hostPath.path")}},
		{"hostPath in a namespace directory with the same prefix", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[3].HostPath.Path = "/srv/vm/default-2/a.img" }, []want{forbidden("spec.disks[3].hostPath.path")}},
		{"hostPath escaping a root with ..", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks[3].HostPath.Path = "/srv/vm/default/../../../etc/shadow"
		}, []want{invalid("spec.disks[3].hostPath.path")}},
		{"relative hostPath", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[3].HostPath.Path = "srv/vm/scratch.img" }, []want{invalid("spec.disks[3].hostPath.path")}},
		{"hostPath not clean", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[3].HostPath.Path = "/srv/vm//./scratch.img" }, []want{invalid("spec.disks[3].hostPath.path")}},
		{"hostPath that is a root itself", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[3].HostPath.Path = "/srv/vm" }, []want{forbidden("spec.disks[3].hostPath.path")}},
		{"hostPath in a sibling sharing a root's prefix", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[3].HostPath.Path = "/srv/vm-other/a.img" }, []want{forbidden("spec.disks[3].hostPath.path")}},
		{"empty hostPath", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[3].HostPath.Path = "" }, []want{required("spec.disks[3].hostPath.path")}},
		{"hostPath when the server allows none", &noRoots, func(vm *vessel.VirtualMachine) { vm.Spec.Kernel = nil; vm.Spec.Interfaces = nil }, []want{forbidden("spec.disks[3].hostPath")}},

		// blank and cloud-init
		{"blank size zero", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[1].Blank.Size = resource.Quantity{} }, []want{invalid("spec.disks[1].blank.size")}},
		{"blank size negative", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[1].Blank.Size = resource.MustParse("-1Gi") }, []want{invalid("spec.disks[1].blank.size")}},
		{"blank size above 16Ti", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[1].Blank.Size = resource.MustParse("17Ti") }, []want{invalid("spec.disks[1].blank.size")}},
		{"two cloudInit disks", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks = append(vm.Spec.Disks, vessel.Disk{Name: "seed2", Bus: vessel.DiskBusSATA, CloudInit: &vessel.CloudInitSource{UserData: "#!/bin/sh\n"}})
		}, []want{forbidden("spec.disks[4].cloudInit")}},
		{"cloudInit data too large", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks[2].CloudInit.UserData = strings.Repeat("u", MaxCloudInitBytes)
		}, []want{tooLong("spec.disks[2].cloudInit")}},

		// interfaces
		{"too many interfaces", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Interfaces = nil
			for i := 0; i <= MaxInterfaces; i++ {
				vm.Spec.Interfaces = append(vm.Spec.Interfaces, vessel.Interface{Name: fmt.Sprintf("nic%d", i), Type: vessel.InterfaceTypeUser})
			}
		}, []want{tooMany("spec.interfaces")}},
		{"interface name not a DNS label", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].Name = "LAN" }, []want{invalid("spec.interfaces[1].name")}},
		{"duplicate interfaces", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].Name = "default" }, []want{duplicate("spec.interfaces[1].name")}},
		{"unknown interface type", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[0].Type = "Macvtap" }, []want{notSupported("spec.interfaces[0].type")}},
		{"managed interface with a bridge", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Interfaces[0].Type, vm.Spec.Interfaces[0].Bridge = vessel.InterfaceTypeManaged, "br0"
		}, []want{forbidden("spec.interfaces[0].bridge")}},
		{"bridge missing", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].Bridge = "" }, []want{required("spec.interfaces[1].bridge")}},
		{"bridge on a User interface", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[0].Bridge = "br0" }, []want{forbidden("spec.interfaces[0].bridge")}},
		{"bridge name longer than IFNAMSIZ", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].Bridge = "br-0123456789abc" }, []want{tooLong("spec.interfaces[1].bridge")}},
		{"bridge name with a slash", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].Bridge = "br/0" }, []want{invalid("spec.interfaces[1].bridge")}},
		{"bridge name with a space", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].Bridge = "br 0" }, []want{invalid("spec.interfaces[1].bridge")}},
		{"bridge name ..", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].Bridge = ".." }, []want{invalid("spec.interfaces[1].bridge")}},
		{"bridge not allowed", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].Bridge = "cni0" }, []want{notSupported("spec.interfaces[1].bridge")}},
		{"bridge on a server that allows none", &Options{AllowedHostPathRoots: testOpts.AllowedHostPathRoots, WritableHostPathRoots: testOpts.WritableHostPathRoots},
			func(vm *vessel.VirtualMachine) {}, []want{forbidden("spec.interfaces[1].bridge")}},

		// cloud-init user data from a Secret
		{"user data both inline and from a secret", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks[2].CloudInit.UserDataSecretRef = &vessel.SecretKeyReference{Name: "seed", Key: "userdata"}
		}, []want{forbidden("spec.disks[2].cloudInit.userDataSecretRef")}},
		{"user data secret without a name", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks[2].CloudInit = &vessel.CloudInitSource{UserDataSecretRef: &vessel.SecretKeyReference{Key: "userdata"}}
		}, []want{required("spec.disks[2].cloudInit.userDataSecretRef.name")}},
		{"user data secret with a bad name", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks[2].CloudInit = &vessel.CloudInitSource{UserDataSecretRef: &vessel.SecretKeyReference{Name: "Seed_1", Key: "userdata"}}
		}, []want{invalid("spec.disks[2].cloudInit.userDataSecretRef.name")}},
		{"user data secret key cleared", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks[2].CloudInit = &vessel.CloudInitSource{UserDataSecretRef: &vessel.SecretKeyReference{Name: "seed"}}
		}, []want{required("spec.disks[2].cloudInit.userDataSecretRef.key")}},
		{"user data secret key with a slash", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks[2].CloudInit = &vessel.CloudInitSource{UserDataSecretRef: &vessel.SecretKeyReference{Name: "seed", Key: "../x"}}
		}, []want{invalid("spec.disks[2].cloudInit.userDataSecretRef.key")}},
		{"bad MAC", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].MACAddress = "52:54:00:12:34" }, []want{invalid("spec.interfaces[1].macAddress")}},
		{"EUI-64 MAC", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].MACAddress = "52:54:00:12:34:56:78:9a" }, []want{invalid("spec.interfaces[1].macAddress")}},
		{"dash-separated MAC", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].MACAddress = "52-54-00-12-34-56" }, []want{invalid("spec.interfaces[1].macAddress")}},
		{"multicast MAC", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].MACAddress = "01:00:5e:00:00:01" }, []want{invalid("spec.interfaces[1].macAddress")}},
		{"broadcast MAC", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].MACAddress = "ff:ff:ff:ff:ff:ff" }, []want{invalid("spec.interfaces[1].macAddress")}},
		{"all-zero MAC", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].MACAddress = "00:00:00:00:00:00" }, []want{invalid("spec.interfaces[1].macAddress")}},
		{"two interfaces with one MAC", nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[0].MACAddress = "52:54:00:12:34:56" }, []want{duplicate("spec.interfaces[1].macAddress")}},

		// placement and power
		{"bad label key in nodeSelector", nil, func(vm *vessel.VirtualMachine) { vm.Spec.NodeSelector["bad key!"] = "x" }, []want{invalid("spec.nodeSelector")}},
		{"bad label value in nodeSelector", nil, func(vm *vessel.VirtualMachine) { vm.Spec.NodeSelector["zone"] = "not a value" }, []want{invalid("spec.nodeSelector")}},
		{"nodeName set on create", nil, func(vm *vessel.VirtualMachine) { vm.Spec.NodeName = "hv-1" }, []want{forbidden("spec.nodeName")}},
		{"negative grace period", nil, func(vm *vessel.VirtualMachine) { vm.Spec.TerminationGracePeriodSeconds = ptr(int64(-1)) }, []want{invalid("spec.terminationGracePeriodSeconds")}},
		{"grace period above an hour", nil, func(vm *vessel.VirtualMachine) { vm.Spec.TerminationGracePeriodSeconds = ptr(int64(3601)) }, []want{invalid("spec.terminationGracePeriodSeconds")}},
		{"grace period missing after defaulting", nil, func(vm *vessel.VirtualMachine) { vm.Spec.TerminationGracePeriodSeconds = nil }, []want{required("spec.terminationGracePeriodSeconds")}},
		{"unknown power action", nil, func(vm *vessel.VirtualMachine) { vm.Spec.PowerAction.Type = "Reboot" }, []want{notSupported("spec.powerAction.type")}},
		{"power action id zero", nil, func(vm *vessel.VirtualMachine) { vm.Spec.PowerAction.ID = 0 }, []want{invalid("spec.powerAction.id")}},
		{"power action without a time", nil, func(vm *vessel.VirtualMachine) { vm.Spec.PowerAction.RequestedAt = metav1.Time{} }, []want{required("spec.powerAction.requestedAt")}},
		{"power action negative grace period", nil, func(vm *vessel.VirtualMachine) { vm.Spec.PowerAction.GracePeriodSeconds = ptr(int64(-5)) }, []want{invalid("spec.powerAction.gracePeriodSeconds")}},

		// several at once: every problem is reported, each at its own path
		{"several problems", nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.CPUs = 0
			vm.Spec.Disks[0].Image.URL = "ftp://x/y"
			vm.Spec.Interfaces[1].Bridge = ""
		}, []want{invalid("spec.cpus"), invalid("spec.disks[0].image.url"), required("spec.interfaces[1].bridge")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vm := validVM()
			tc.mutate(vm)
			opts := testOpts
			if tc.opts != nil {
				opts = *tc.opts
			}
			expectErrors(t, ValidateVirtualMachine(vm, opts), tc.want...)
		})
	}
}

// Errors reach responses, events and audit logs: a URL's password must not.
func TestImageURLErrorsDoNotLeakCredentials(t *testing.T) {
	for _, u := range []string{
		"https://admin:hunter2@images.example.com/a.qcow2",
		"ftp://admin:hunter2@images.example.com/a.qcow2",
		"https://admin:hunter2@images.example.com:99999999/a.qcow2",
		"https://admin:hunter2@[::1/a.qcow2",
	} {
		vm := validVM()
		vm.Spec.Disks[0].Image.URL = u
		errs := ValidateVirtualMachine(vm, testOpts)
		if len(errs) == 0 {
			t.Errorf("%s: accepted", u)
		}
		if msg := errs.ToAggregate().Error(); strings.Contains(msg, "hunter2") {
			t.Errorf("%s: error leaks the password: %s", u, msg)
		}
	}
}

func TestValidateVirtualMachineUpdate(t *testing.T) {
	cases := []struct {
		name   string
		old    func() *vessel.VirtualMachine
		opts   *Options
		mutate func(vm *vessel.VirtualMachine)
		want   []want
	}{
		// allowed
		{"no change", boundVM, nil, func(vm *vessel.VirtualMachine) {}, nil},
		{"stop: run strategy and a new power action", boundVM, nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.RunStrategy = vessel.RunStrategyHalted
			vm.Spec.PowerAction = &vessel.PowerAction{Type: vessel.PowerActionStop, ID: 4, RequestedAt: testTime}
		}, nil},
		{"pause", boundVM, nil, func(vm *vessel.VirtualMachine) { vm.Spec.Paused = true }, nil},
		{"hardware changes for the next start", boundVM, nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.CPUs = 8
			vm.Spec.Memory = resource.MustParse("8Gi")
			vm.Spec.Firmware = vessel.FirmwareBIOS
			vm.Spec.Kernel = nil
			vm.Spec.Disks = append(vm.Spec.Disks, vessel.Disk{Name: "logs", Bus: vessel.DiskBusVirtio, Blank: &vessel.BlankSource{Size: resource.MustParse("1Gi")}})
			vm.Spec.Interfaces = vm.Spec.Interfaces[:1]
		}, nil},
		{"labels and finalizers", boundVM, nil, func(vm *vessel.VirtualMachine) {
			vm.Labels["tier"] = "frontend"
			vm.Finalizers = nil
		}, nil},
		{"unbound VM stays unbound", validVM, nil, func(vm *vessel.VirtualMachine) { vm.Spec.CPUs = 4 }, nil},
		{"host path stored before the roots were narrowed", boundVM, &Options{AllowedHostPathRoots: []string{"/var/lib/vessel/images"}}, func(vm *vessel.VirtualMachine) {
			vm.Spec.RunStrategy = vessel.RunStrategyHalted
		}, nil},
		{"stored disk made read-only", boundVM, &Options{AllowedHostPathRoots: []string{"/var/lib/vessel/images"}}, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks[3].ReadOnly = true
		}, []want{forbidden("spec.disks[3].hostPath.path")}},
		{"bridge stored before the server's list was narrowed", boundVM, &Options{AllowedHostPathRoots: testOpts.AllowedHostPathRoots, WritableHostPathRoots: testOpts.WritableHostPathRoots},
			func(vm *vessel.VirtualMachine) { vm.Spec.RunStrategy = vessel.RunStrategyHalted }, nil},
		{"bridge changed to one not allowed", boundVM, nil, func(vm *vessel.VirtualMachine) { vm.Spec.Interfaces[1].Bridge = "docker0" },
			[]want{notSupported("spec.interfaces[1].bridge")}},

		// rejected
		{"nodeName changed", boundVM, nil, func(vm *vessel.VirtualMachine) { vm.Spec.NodeName = "hv-2" }, []want{forbidden("spec.nodeName")}},
		{"nodeName cleared", boundVM, nil, func(vm *vessel.VirtualMachine) { vm.Spec.NodeName = "" }, []want{forbidden("spec.nodeName")}},
		{"nodeName set by a plain update", validVM, nil, func(vm *vessel.VirtualMachine) { vm.Spec.NodeName = "hv-1" }, []want{forbidden("spec.nodeName")}},
		{"power action removed", boundVM, nil, func(vm *vessel.VirtualMachine) { vm.Spec.PowerAction = nil }, []want{forbidden("spec.powerAction")}},
		{"power action changed without a new id", boundVM, nil, func(vm *vessel.VirtualMachine) { vm.Spec.PowerAction.Type = vessel.PowerActionStop }, []want{invalid("spec.powerAction.id")}},
		{"power action id lowered", boundVM, nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.PowerAction = &vessel.PowerAction{Type: vessel.PowerActionRestart, ID: 1, RequestedAt: testTime}
		}, []want{invalid("spec.powerAction.id")}},
		{"name changed", boundVM, nil, func(vm *vessel.VirtualMachine) { vm.Name = "web-2" }, []want{invalid("metadata.name")}},
		{"no resourceVersion", boundVM, nil, func(vm *vessel.VirtualMachine) { vm.ResourceVersion = "" }, []want{invalid("metadata.resourceVersion")}},
		{"spec made invalid", boundVM, nil, func(vm *vessel.VirtualMachine) { vm.Spec.CPUs = 0 }, []want{invalid("spec.cpus")}},
		{"new host path outside the roots", boundVM, nil, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks = append(vm.Spec.Disks, vessel.Disk{Name: "etc", Bus: vessel.DiskBusVirtio, HostPath: &vessel.HostPathSource{Path: "/etc/passwd", Format: vessel.DiskFormatRaw}})
		}, []want{forbidden("spec.disks[4].hostPath.path")}},
		// A read-only disk of a shared root made writable is checked again:
		// only the very use stored before is exempt.
		{"stored read-only shared disk made writable", func() *vessel.VirtualMachine {
			vm := boundVM()
			vm.Spec.Disks[3].HostPath.Path = "/var/lib/vessel/images/base.img"
			vm.Spec.Disks[3].ReadOnly = true
			return vm
		}, nil, func(vm *vessel.VirtualMachine) { vm.Spec.Disks[3].ReadOnly = false }, []want{invalid("spec.disks[3].readOnly")}},
		{"stored host path still must be clean", boundVM, &Options{}, func(vm *vessel.VirtualMachine) {
			vm.Spec.Disks[3].HostPath.Path = "/srv/vm/default/./scratch.img"
		}, []want{invalid("spec.disks[3].hostPath.path")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oldVM := tc.old()
			newVM := oldVM.DeepCopy()
			tc.mutate(newVM)
			opts := testOpts
			if tc.opts != nil {
				opts = *tc.opts
			}
			expectErrors(t, ValidateVirtualMachineUpdate(newVM, oldVM, opts), tc.want...)
		})
	}
}

func TestValidateVirtualMachineStatusUpdate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(s *vessel.VirtualMachineStatus)
		want   []want
	}{
		{"valid status", func(s *vessel.VirtualMachineStatus) {}, nil},
		{"empty status", func(s *vessel.VirtualMachineStatus) { *s = vessel.VirtualMachineStatus{} }, nil},
		{"bad phase", func(s *vessel.VirtualMachineStatus) { s.Phase = "Exploded" }, []want{notSupported("status.phase")}},
		{"condition with a bad status", func(s *vessel.VirtualMachineStatus) { s.Conditions[0].Status = "Maybe" }, []want{notSupported("status.conditions[0].status")}},
		{"condition without a reason", func(s *vessel.VirtualMachineStatus) { s.Conditions[1].Reason = "" }, []want{required("status.conditions[1].reason")}},
		{"duplicate condition type", func(s *vessel.VirtualMachineStatus) { s.Conditions[1].Type = s.Conditions[0].Type }, []want{duplicate("status.conditions[1]")}},
		{"negative observedGeneration", func(s *vessel.VirtualMachineStatus) { s.ObservedGeneration = -1 }, []want{invalid("status.observedGeneration")}},
		{"negative observedPowerActionID", func(s *vessel.VirtualMachineStatus) { s.ObservedPowerActionID = -1 }, []want{invalid("status.observedPowerActionID")}},
		{"bad nodeName", func(s *vessel.VirtualMachineStatus) { s.NodeName = "HV_1" }, []want{invalid("status.nodeName")}},
		{"unknown stop reason", func(s *vessel.VirtualMachineStatus) { s.StopReason = "Bored" }, []want{notSupported("status.stopReason")}},
		{"negative restartCount", func(s *vessel.VirtualMachineStatus) { s.RestartCount = -1 }, []want{invalid("status.restartCount")}},
		{"duplicate interface statuses", func(s *vessel.VirtualMachineStatus) { s.Interfaces[1].Name = "default" }, []want{duplicate("status.interfaces[1].name")}},
		{"interface status without a name", func(s *vessel.VirtualMachineStatus) { s.Interfaces[0].Name = "" }, []want{required("status.interfaces[0].name")}},
		{"bad IP address", func(s *vessel.VirtualMachineStatus) { s.Interfaces[0].IPAddress = "10.0.2.256" }, []want{invalid("status.interfaces[0].ipAddress")}},
		{"non-canonical IPv6 address", func(s *vessel.VirtualMachineStatus) { s.Interfaces[1].IPAddress = "2001:DB8:0::15" }, []want{invalid("status.interfaces[1].ipAddress")}},
		{"bad reported MAC", func(s *vessel.VirtualMachineStatus) { s.Interfaces[0].MACAddress = "nope" }, []want{invalid("status.interfaces[0].macAddress")}},
		{"duplicate disk statuses", func(s *vessel.VirtualMachineStatus) { s.Disks[1].Name = "root" }, []want{duplicate("status.disks[1].name")}},
		{"bad disk phase", func(s *vessel.VirtualMachineStatus) { s.Disks[0].Phase = "Lost" }, []want{notSupported("status.disks[0].phase")}},
		{"disk message too long", func(s *vessel.VirtualMachineStatus) { s.Disks[0].Message = strings.Repeat("m", 32*1024+1) }, []want{tooLong("status.disks[0].message")}},
		{"negative consoleLogBytes", func(s *vessel.VirtualMachineStatus) { s.ConsoleLogBytes = -1 }, []want{invalid("status.consoleLogBytes")}},
		{"duplicate snapshots", func(s *vessel.VirtualMachineStatus) { s.Snapshots = append(s.Snapshots, s.Snapshots[0]) }, []want{duplicate("status.snapshots[2]")}},
		{"bad snapshot name", func(s *vessel.VirtualMachineStatus) { s.Snapshots[0] = "Nightly" }, []want{invalid("status.snapshots[0]")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oldVM := boundVM()
			newVM := oldVM.DeepCopy()
			newVM.Status = validVMStatus()
			tc.mutate(&newVM.Status)
			expectErrors(t, ValidateVirtualMachineStatusUpdate(newVM, oldVM), tc.want...)
		})
	}

	t.Run("spec is not the status writer's concern", func(t *testing.T) {
		oldVM := boundVM()
		oldVM.Spec.CPUs = 0 // stored before a rule existed, say
		newVM := oldVM.DeepCopy()
		newVM.Status = validVMStatus()
		expectErrors(t, ValidateVirtualMachineStatusUpdate(newVM, oldVM))
	})
	t.Run("metadata is still checked", func(t *testing.T) {
		oldVM := boundVM()
		newVM := oldVM.DeepCopy()
		newVM.Namespace = "other"
		expectErrors(t, ValidateVirtualMachineStatusUpdate(newVM, oldVM), invalid("metadata.namespace"))
	})
}

func TestValidateVirtualMachineBinding(t *testing.T) {
	expectErrors(t, ValidateVirtualMachineBinding(&vessel.VirtualMachineBinding{ObjectMeta: metav1.ObjectMeta{Name: "web-1"}, Target: "hv-1.example.com"}))
	expectErrors(t, ValidateVirtualMachineBinding(&vessel.VirtualMachineBinding{}), required("target"))
	expectErrors(t, ValidateVirtualMachineBinding(&vessel.VirtualMachineBinding{Target: "HV_1"}), invalid("target"))
}

func TestValidateVirtualMachineActionOptions(t *testing.T) {
	expectErrors(t, ValidateVirtualMachineActionOptions(&vessel.VirtualMachineActionOptions{}))
	expectErrors(t, ValidateVirtualMachineActionOptions(&vessel.VirtualMachineActionOptions{GracePeriodSeconds: ptr(int64(0))}))
	expectErrors(t, ValidateVirtualMachineActionOptions(&vessel.VirtualMachineActionOptions{GracePeriodSeconds: ptr(int64(-1))}), invalid("gracePeriodSeconds"))
	expectErrors(t, ValidateVirtualMachineActionOptions(&vessel.VirtualMachineActionOptions{GracePeriodSeconds: ptr(int64(MaxGracePeriodSeconds + 1))}), invalid("gracePeriodSeconds"))
}

func TestValidateVirtualMachineSnapshot(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(s *vessel.VirtualMachineSnapshot)
		want   []want
	}{
		{"valid", func(s *vessel.VirtualMachineSnapshot) {}, nil},
		{"retained, without memory", func(s *vessel.VirtualMachineSnapshot) {
			s.Spec.DeletionPolicy = vessel.SnapshotDeletionPolicyRetain
			s.Spec.IncludeMemory = ptr(false)
		}, nil},
		{"missing VM name", func(s *vessel.VirtualMachineSnapshot) { s.Spec.VirtualMachineName = "" }, []want{required("spec.virtualMachineName")}},
		{"VM name not a DNS label", func(s *vessel.VirtualMachineSnapshot) { s.Spec.VirtualMachineName = "web.1" }, []want{invalid("spec.virtualMachineName")}},
		{"bad deletion policy", func(s *vessel.VirtualMachineSnapshot) { s.Spec.DeletionPolicy = "Keep" }, []want{notSupported("spec.deletionPolicy")}},
		{"includeMemory missing after defaulting", func(s *vessel.VirtualMachineSnapshot) { s.Spec.IncludeMemory = nil }, []want{required("spec.includeMemory")}},
		{"bad name", func(s *vessel.VirtualMachineSnapshot) { s.Name = "Before_Upgrade" }, []want{invalid("metadata.name")}},
		{"no namespace", func(s *vessel.VirtualMachineSnapshot) { s.Namespace = "" }, []want{required("metadata.namespace")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := validSnapshot()
			tc.mutate(s)
			expectErrors(t, ValidateVirtualMachineSnapshot(s), tc.want...)
		})
	}
}

func TestValidateVirtualMachineSnapshotUpdate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(s *vessel.VirtualMachineSnapshot)
		want   []want
	}{
		{"labels may change", func(s *vessel.VirtualMachineSnapshot) { s.Labels = map[string]string{"keep": "true"} }, nil},
		{"VM name changed", func(s *vessel.VirtualMachineSnapshot) { s.Spec.VirtualMachineName = "web-2" }, []want{invalid("spec")}},
		{"deletion policy changed", func(s *vessel.VirtualMachineSnapshot) { s.Spec.DeletionPolicy = vessel.SnapshotDeletionPolicyRetain }, []want{invalid("spec")}},
		{"includeMemory changed", func(s *vessel.VirtualMachineSnapshot) { s.Spec.IncludeMemory = ptr(false) }, []want{invalid("spec")}},
		{"no resourceVersion", func(s *vessel.VirtualMachineSnapshot) { s.ResourceVersion = "" }, []want{invalid("metadata.resourceVersion")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oldS := validSnapshot()
			newS := oldS.DeepCopy()
			tc.mutate(newS)
			expectErrors(t, ValidateVirtualMachineSnapshotUpdate(newS, oldS), tc.want...)
		})
	}
}

func TestValidateVirtualMachineSnapshotStatusUpdate(t *testing.T) {
	valid := vessel.VirtualMachineSnapshotStatus{
		Phase:             vessel.SnapshotSucceeded,
		ReadyToUse:        true,
		CreationTime:      &testTime,
		Size:              ptr(resource.MustParse("1536Mi")),
		MemoryIncluded:    true,
		VirtualMachineUID: "0b9a4a5e-6f0e-4e5e-9d6a-3c1f2b7d8e90",
		NodeName:          "hv-1.example.com",
		Conditions:        []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Taken", LastTransitionTime: testTime}},
	}
	cases := []struct {
		name   string
		mutate func(s *vessel.VirtualMachineSnapshotStatus)
		want   []want
	}{
		{"valid", func(s *vessel.VirtualMachineSnapshotStatus) {}, nil},
		{"bad phase", func(s *vessel.VirtualMachineSnapshotStatus) { s.Phase = "Done" }, []want{notSupported("status.phase")}},
		{"negative size", func(s *vessel.VirtualMachineSnapshotStatus) { s.Size = ptr(resource.MustParse("-1")) }, []want{invalid("status.size")}},
		{"bad node name", func(s *vessel.VirtualMachineSnapshotStatus) { s.NodeName = "-hv" }, []want{invalid("status.nodeName")}},
		{"condition without a time", func(s *vessel.VirtualMachineSnapshotStatus) { s.Conditions[0].LastTransitionTime = metav1.Time{} }, []want{required("status.conditions[0].lastTransitionTime")}},
		{"error too long", func(s *vessel.VirtualMachineSnapshotStatus) { s.Error = strings.Repeat("e", 32*1024+1) }, []want{tooLong("status.error")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oldS := validSnapshot()
			newS := oldS.DeepCopy()
			newS.Status = *valid.DeepCopy()
			tc.mutate(&newS.Status)
			expectErrors(t, ValidateVirtualMachineSnapshotStatusUpdate(newS, oldS), tc.want...)
		})
	}
}

func TestValidateVirtualMachineRestore(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(r *vessel.VirtualMachineRestore)
		want   []want
	}{
		{"valid", func(r *vessel.VirtualMachineRestore) {}, nil},
		{"missing snapshot name", func(r *vessel.VirtualMachineRestore) { r.Spec.SnapshotName = "" }, []want{required("spec.snapshotName")}},
		{"bad snapshot name", func(r *vessel.VirtualMachineRestore) { r.Spec.SnapshotName = "Snap!" }, []want{invalid("spec.snapshotName")}},
		{"missing VM name", func(r *vessel.VirtualMachineRestore) { r.Spec.VirtualMachineName = "" }, []want{required("spec.virtualMachineName")}},
		{"bad name", func(r *vessel.VirtualMachineRestore) { r.Name = "" }, []want{required("metadata.name")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := validRestore()
			tc.mutate(r)
			expectErrors(t, ValidateVirtualMachineRestore(r), tc.want...)
		})
	}

	t.Run("spec is immutable", func(t *testing.T) {
		oldR := validRestore()
		newR := oldR.DeepCopy()
		newR.Spec.SnapshotName = "web-1.nightly"
		expectErrors(t, ValidateVirtualMachineRestoreUpdate(newR, oldR), invalid("spec"))
		newR = oldR.DeepCopy()
		newR.Annotations = map[string]string{"note": "ok"}
		expectErrors(t, ValidateVirtualMachineRestoreUpdate(newR, oldR))
	})
	t.Run("status", func(t *testing.T) {
		oldR := validRestore()
		newR := oldR.DeepCopy()
		newR.Status = vessel.VirtualMachineRestoreStatus{Phase: vessel.SnapshotSucceeded, Complete: true, RestoreTime: &testTime}
		expectErrors(t, ValidateVirtualMachineRestoreStatusUpdate(newR, oldR))
		newR.Status.Phase = "Restored"
		expectErrors(t, ValidateVirtualMachineRestoreStatusUpdate(newR, oldR), notSupported("status.phase"))
	})
}

func TestValidateHypervisor(t *testing.T) {
	expectErrors(t, ValidateHypervisor(validHypervisor()))

	h := validHypervisor()
	h.Name = "HV_1"
	expectErrors(t, ValidateHypervisor(h), invalid("metadata.name"))

	h = validHypervisor()
	h.Namespace = "default"
	expectErrors(t, ValidateHypervisor(h), forbidden("metadata.namespace"))

	oldH := validHypervisor()
	newH := oldH.DeepCopy()
	newH.Spec.Unschedulable = false
	newH.Labels["gpu"] = "none"
	expectErrors(t, ValidateHypervisorUpdate(newH, oldH))
	newH.Name = "hv-2"
	expectErrors(t, ValidateHypervisorUpdate(newH, oldH), invalid("metadata.name"))
}

func TestValidateHypervisorStatusUpdate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(s *vessel.HypervisorStatus)
		want   []want
	}{
		{"valid", func(s *vessel.HypervisorStatus) {}, nil},
		{"empty", func(s *vessel.HypervisorStatus) { *s = vessel.HypervisorStatus{} }, nil},
		{"IPv6 endpoint", func(s *vessel.HypervisorStatus) { s.DaemonEndpoint = "[fd00::5]:10250" }, nil},
		{"DNS endpoint", func(s *vessel.HypervisorStatus) { s.DaemonEndpoint = "hv-1.example.com:10250" }, nil},
		{"allocated above allocatable is a report, not an error", func(s *vessel.HypervisorStatus) { s.Allocated.CPUs = 40 }, nil},
		{"allocatable cpus above capacity: vCPU overcommit", func(s *vessel.HypervisorStatus) { s.Allocatable.CPUs = s.Capacity.CPUs * 8 }, nil},
		{"allocatable memory above capacity", func(s *vessel.HypervisorStatus) { s.Allocatable.Memory = resource.MustParse("65Gi") }, []want{invalid("status.allocatable.memory")}},
		{"allocatable vms above capacity", func(s *vessel.HypervisorStatus) { s.Allocatable.VMs = 111 }, []want{invalid("status.allocatable.vms")}},
		{"negative capacity", func(s *vessel.HypervisorStatus) { s.Capacity.VMs = -1 }, []want{invalid("status.capacity.vms")}},
		{"negative allocatable memory", func(s *vessel.HypervisorStatus) { s.Allocatable.Memory = resource.MustParse("-1Gi") }, []want{invalid("status.allocatable.memory")}},
		{"negative allocated", func(s *vessel.HypervisorStatus) { s.Allocated.CPUs = -2 }, []want{invalid("status.allocated.cpus")}},
		{"endpoint without a port", func(s *vessel.HypervisorStatus) { s.DaemonEndpoint = "10.0.0.5" }, []want{invalid("status.daemonEndpoint")}},
		{"endpoint port zero", func(s *vessel.HypervisorStatus) { s.DaemonEndpoint = "10.0.0.5:0" }, []want{invalid("status.daemonEndpoint")}},
		{"endpoint port too large", func(s *vessel.HypervisorStatus) { s.DaemonEndpoint = "10.0.0.5:65536" }, []want{invalid("status.daemonEndpoint")}},
		{"endpoint port by name", func(s *vessel.HypervisorStatus) { s.DaemonEndpoint = "10.0.0.5:https" }, []want{invalid("status.daemonEndpoint")}},
		{"endpoint without a host", func(s *vessel.HypervisorStatus) { s.DaemonEndpoint = ":10250" }, []want{invalid("status.daemonEndpoint")}},
		{"endpoint with a bad host", func(s *vessel.HypervisorStatus) { s.DaemonEndpoint = "hv_1:10250" }, []want{invalid("status.daemonEndpoint")}},
		{"duplicate Ready condition", func(s *vessel.HypervisorStatus) { s.Conditions = append(s.Conditions, s.Conditions[0]) }, []want{duplicate("status.conditions[1]")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oldH := validHypervisor()
			newH := oldH.DeepCopy()
			tc.mutate(&newH.Status)
			expectErrors(t, ValidateHypervisorStatusUpdate(newH, oldH), tc.want...)
		})
	}
}

// Quantities with extreme exponents parse cheaply but make Quantity.Cmp
// compute enormous powers of ten; validation must answer at once.
func TestExtremeQuantitiesAreRejectedQuickly(t *testing.T) {
	huge, negHuge := resource.MustParse("1e999999999"), resource.MustParse("-1e999999999")

	vm := validVM()
	vm.Spec.Memory = huge
	vm.Spec.Disks[1].Blank.Size = huge
	expectErrors(t, ValidateVirtualMachine(vm, testOpts), invalid("spec.memory"), invalid("spec.disks[1].blank.size"))
	vm.Spec.Memory = negHuge
	vm.Spec.Disks[1].Blank.Size = negHuge
	expectErrors(t, ValidateVirtualMachine(vm, testOpts), invalid("spec.memory"), invalid("spec.disks[1].blank.size"))

	oldH := validHypervisor()
	h := oldH.DeepCopy()
	h.Status.Allocatable.Memory = huge
	expectErrors(t, ValidateHypervisorStatusUpdate(h, oldH), invalid("status.allocatable.memory"))
	h.Status.Capacity.Memory = resource.MustParse("2e999999999")
	expectErrors(t, ValidateHypervisorStatusUpdate(h, oldH))
}

func TestCmpQuantities(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1Gi", "1Gi", 0}, {"1Gi", "1024Mi", 0}, {"1G", "1Gi", -1}, {"80Mi", "83886080", 0},
		{"1e999999999", "1Ti", 1}, {"-1e999999999", "1Ti", -1}, {"-1e999999999", "-1", -1},
		{"0", "1", -1}, {"-1", "0", -1}, {"0", "0", 0}, {"1.5", "1500m", 0}, {"999", "1k", -1},
		{"1e999999999", "2e999999999", -1}, {"123456789012345678901234567890", "1e29", 1},
	} {
		a, b := resource.MustParse(tc.a), resource.MustParse(tc.b)
		if got := cmpQuantities(a, b); got != tc.want {
			t.Errorf("cmpQuantities(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := cmpQuantities(b, a); got != -tc.want {
			t.Errorf("cmpQuantities(%s, %s) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestValidateHostPathRoots(t *testing.T) {
	for _, tc := range []struct {
		name             string
		shared, writable []string
		wantErrs         int
	}{
		{"defaults", []string{"/var/lib/vessel/images"}, nil, 0},
		{"separate roots", []string{"/var/lib/vessel/images"}, []string{"/var/lib/vessel/vm", "/srv/vm"}, 0},
		{"common prefix is not nesting", []string{"/srv/vm"}, []string{"/srv/vm-rw"}, 0},
		{"relative roots", []string{"images"}, []string{"vm"}, 2},
		{"same root", []string{"/srv/vm"}, []string{"/srv/vm/"}, 1},
		{"writable inside shared", []string{"/var/lib/vessel"}, []string{"/var/lib/vessel/vm"}, 1},
		// Namespace "images" could write the shared root's files.
		{"shared inside writable", []string{"/srv/vm/images"}, []string{"/srv/vm"}, 1},
	} {
		if errs := ValidateHostPathRoots(tc.shared, tc.writable); len(errs) != tc.wantErrs {
			t.Errorf("%s: %v, want %d errors", tc.name, errs, tc.wantErrs)
		}
	}
}
