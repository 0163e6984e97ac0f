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

package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
)

// Defaults that a user relies on; they are part of the API and never change
// within a version.
const (
	DefaultCPUs                          = 1
	DefaultMemory                        = "128Mi"
	DefaultTerminationGracePeriodSeconds = 30
	DefaultInterfaceName                 = "default"
	// DefaultUserDataSecretKey is the key userDataSecretRef reads, as in
	// KubeVirt's cloud-init secrets.
	DefaultUserDataSecretKey = "userdata"
)

func addDefaultingFuncs(scheme *runtime.Scheme) error {
	return RegisterDefaults(scheme)
}

// SetDefaults_VirtualMachineSpec fills in the run strategy, size, firmware,
// grace period and a user-mode interface.
func SetDefaults_VirtualMachineSpec(obj *VirtualMachineSpec) {
	if obj.RunStrategy == "" {
		obj.RunStrategy = RunStrategyAlways
	}
	if obj.CPUs == 0 {
		obj.CPUs = DefaultCPUs
	}
	if obj.Memory.IsZero() {
		obj.Memory = resource.MustParse(DefaultMemory)
	}
	if obj.Firmware == "" {
		obj.Firmware = FirmwareBIOS
	}
	if obj.TerminationGracePeriodSeconds == nil {
		period := int64(DefaultTerminationGracePeriodSeconds)
		obj.TerminationGracePeriodSeconds = &period
	}
	if len(obj.Interfaces) == 0 {
		obj.Interfaces = []Interface{{Name: DefaultInterfaceName}}
	}
}

// SetDefaults_Disk attaches disks to virtio, and declares image and host
// path disks raw, unless told otherwise. Raw is the format QEMU never reads
// anything but data from; the default is stored, so the format QEMU is
// told is always the one the object shows.
func SetDefaults_Disk(obj *Disk) {
	if obj.Bus == "" {
		obj.Bus = DiskBusVirtio
	}
	if obj.Image != nil && obj.Image.Format == "" {
		obj.Image.Format = DiskFormatRaw
	}
	if obj.HostPath != nil && obj.HostPath.Format == "" {
		obj.HostPath.Format = DiskFormatRaw
	}
}

// SetDefaults_CloudInitSource reads user data from the Secret's "userdata"
// key unless told otherwise.
func SetDefaults_CloudInitSource(obj *CloudInitSource) {
	if obj.UserDataSecretRef != nil && obj.UserDataSecretRef.Key == "" {
		obj.UserDataSecretRef.Key = DefaultUserDataSecretKey
	}
}

// SetDefaults_Interface puts interfaces on the managed network unless told
// otherwise. VMs stored before Managed existed keep the User type they were
// defaulted to then: defaulting only fills an empty type.
func SetDefaults_Interface(obj *Interface) {
	if obj.Type == "" {
		obj.Type = InterfaceTypeManaged
	}
}

// SetDefaults_VirtualMachineSnapshotSpec includes memory and deletes the
// data with the object unless told otherwise.
func SetDefaults_VirtualMachineSnapshotSpec(obj *VirtualMachineSnapshotSpec) {
	if obj.IncludeMemory == nil {
		include := true
		obj.IncludeMemory = &include
	}
	if obj.DeletionPolicy == "" {
		obj.DeletionPolicy = SnapshotDeletionPolicyDelete
	}
}

// SetDefaults_VirtualMachineCloneSpec clones memory unless told otherwise.
func SetDefaults_VirtualMachineCloneSpec(obj *VirtualMachineCloneSpec) {
	if obj.Memory == nil {
		memory := true
		obj.Memory = &memory
	}
}

// SetDefaults_VirtualMachinePoolSpec keeps one VM by default.
func SetDefaults_VirtualMachinePoolSpec(obj *VirtualMachinePoolSpec) {
	if obj.Replicas == nil {
		one := int32(1)
		obj.Replicas = &one
	}
}
