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

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
)

var (
	supportedRunStrategies = []vessel.RunStrategy{
		vessel.RunStrategyAlways,
		vessel.RunStrategyRerunOnFailure,
		vessel.RunStrategyManual,
		vessel.RunStrategyHalted,
		vessel.RunStrategyOnce,
	}
	supportedFirmwares       = []vessel.Firmware{vessel.FirmwareBIOS, vessel.FirmwareUEFI}
	supportedDiskBuses       = []vessel.DiskBus{vessel.DiskBusVirtio, vessel.DiskBusSATA, vessel.DiskBusSCSI}
	supportedPowerActionType = []vessel.PowerActionType{vessel.PowerActionStart, vessel.PowerActionStop, vessel.PowerActionRestart}
)

// ValidateVirtualMachine validates a VirtualMachine on create.
func ValidateVirtualMachine(vm *vessel.VirtualMachine, opts Options) field.ErrorList {
	// VM names become libvirt domain names and guest hostnames: DNS labels.
	allErrs := apimachineryvalidation.ValidateObjectMeta(&vm.ObjectMeta, true, apimachineryvalidation.NameIsDNSLabel, field.NewPath("metadata"))

	specPath := field.NewPath("spec")
	allErrs = append(allErrs, validateVirtualMachineSpec(&vm.Spec, newHostPathPolicy(opts, vm.Namespace), newBridgePolicy(opts, nil), specPath)...)
	if vm.Spec.NodeName != "" {
		allErrs = append(allErrs, field.Forbidden(specPath.Child("nodeName"), "may not be set on create: it is set through the binding subresource"))
	}
	return allErrs
}

// ValidateVirtualMachineUpdate validates an update of a VirtualMachine's spec
// and metadata. Hardware may change (it takes effect at the next start), but
// spec.nodeName may not: only the binding subresource sets it, and binding
// must therefore not run this validation.
func ValidateVirtualMachineUpdate(newVM, oldVM *vessel.VirtualMachine, opts Options) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newVM.ObjectMeta, &oldVM.ObjectMeta, field.NewPath("metadata"))

	specPath := field.NewPath("spec")
	policy := newHostPathPolicy(opts, newVM.Namespace)
	policy.unchanged = hostPathsOf(&oldVM.Spec)
	allErrs = append(allErrs, validateVirtualMachineSpec(&newVM.Spec, policy, newBridgePolicy(opts, &oldVM.Spec), specPath)...)

	if newVM.Spec.NodeName != oldVM.Spec.NodeName {
		allErrs = append(allErrs, field.Forbidden(specPath.Child("nodeName"), "may only be set through the binding subresource and cannot change once set"))
	}
	allErrs = append(allErrs, validatePowerActionUpdate(newVM.Spec.PowerAction, oldVM.Spec.PowerAction, specPath.Child("powerAction"))...)
	return allErrs
}

// validateVirtualMachineSpec checks a spec after defaulting, so fields that
// have defaults are required.
func validateVirtualMachineSpec(spec *vessel.VirtualMachineSpec, policy hostPathPolicy, bridges bridgePolicy, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList

	allErrs = append(allErrs, validateEnum(spec.RunStrategy, supportedRunStrategies, fldPath.Child("runStrategy"))...)
	if spec.CPUs < MinCPUs || spec.CPUs > MaxCPUs {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("cpus"), spec.CPUs, utilvalidation.InclusiveRangeError(MinCPUs, MaxCPUs)))
	}
	memoryPath := fldPath.Child("memory")
	if cmpQuantities(spec.Memory, minMemory) < 0 {
		allErrs = append(allErrs, field.Invalid(memoryPath, spec.Memory.String(), fmt.Sprintf("must be at least %s: smaller guests run out of memory while booting", MinMemory)))
	} else {
		allErrs = append(allErrs, validateWholeBytesInRange(spec.Memory, minMemory, maxMemory, memoryPath)...)
	}
	allErrs = append(allErrs, validateEnum(spec.Firmware, supportedFirmwares, fldPath.Child("firmware"))...)

	if spec.Kernel != nil {
		allErrs = append(allErrs, validateKernelBoot(spec.Kernel, policy, fldPath.Child("kernel"))...)
	}
	allErrs = append(allErrs, validateDisks(spec.Disks, policy, fldPath.Child("disks"))...)
	allErrs = append(allErrs, validateInterfaces(spec.Interfaces, bridges, fldPath.Child("interfaces"))...)
	allErrs = append(allErrs, metav1validation.ValidateLabels(spec.NodeSelector, fldPath.Child("nodeSelector"))...)

	gracePath := fldPath.Child("terminationGracePeriodSeconds")
	if spec.TerminationGracePeriodSeconds == nil {
		allErrs = append(allErrs, field.Required(gracePath, ""))
	} else {
		allErrs = append(allErrs, validateGracePeriod(*spec.TerminationGracePeriodSeconds, gracePath)...)
	}

	if spec.PowerAction != nil {
		allErrs = append(allErrs, validatePowerAction(spec.PowerAction, fldPath.Child("powerAction"))...)
	}
	return allErrs
}

// validateKernelBoot checks direct kernel boot.
func validateKernelBoot(k *vessel.KernelBoot, policy hostPathPolicy, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, validateFileSource(&k.Kernel, policy, fldPath.Child("kernel"))...)
	if k.Initrd != nil {
		allErrs = append(allErrs, validateFileSource(k.Initrd, policy, fldPath.Child("initrd"))...)
	}
	cmdlinePath := fldPath.Child("cmdline")
	if len(k.Cmdline) > MaxCmdlineBytes {
		allErrs = append(allErrs, field.TooLong(cmdlinePath, "", MaxCmdlineBytes))
	} else {
		// NUL would end the command line early and a newline is not a
		// separator the kernel knows; neither survives libvirt XML.
		allErrs = append(allErrs, validateNoControlCharacters(k.Cmdline, cmdlinePath)...)
	}
	return allErrs
}

// validateDisks checks the disk list: names, buses and exactly one source each.
func validateDisks(disks []vessel.Disk, policy hostPathPolicy, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if len(disks) > MaxDisks {
		allErrs = append(allErrs, field.TooMany(fldPath, len(disks), MaxDisks))
	}
	names := make(map[string]bool, len(disks))
	cloudInitDisk := -1
	for i := range disks {
		disk := &disks[i]
		idxPath := fldPath.Index(i)

		namePath := idxPath.Child("name")
		allErrs = append(allErrs, validateReferenceName(disk.Name, apimachineryvalidation.NameIsDNSLabel, namePath)...)
		if disk.Name != "" {
			if names[disk.Name] {
				allErrs = append(allErrs, field.Duplicate(namePath, disk.Name))
			}
			names[disk.Name] = true
		}

		// The bus of a cloudInit disk is ignored (seeds are SATA CD-ROMs) but
		// is still defaulted, so it is checked like any other.
		allErrs = append(allErrs, validateEnum(disk.Bus, supportedDiskBuses, idxPath.Child("bus"))...)

		numSources := 0
		if disk.Image != nil {
			numSources++
			allErrs = append(allErrs, validateImageSource(disk.Image, true, idxPath.Child("image"))...)
		}
		if disk.HostPath != nil {
			if numSources > 0 {
				allErrs = append(allErrs, field.Forbidden(idxPath.Child("hostPath"), "may not specify more than one source"))
			} else {
				numSources++
				allErrs = append(allErrs, validateHostPathSource(disk.HostPath, policy, true, disk.ReadOnly, idxPath.Child("hostPath"), idxPath.Child("readOnly"))...)
			}
		}
		if disk.Blank != nil {
			if numSources > 0 {
				allErrs = append(allErrs, field.Forbidden(idxPath.Child("blank"), "may not specify more than one source"))
			} else {
				numSources++
				allErrs = append(allErrs, validateBlankSource(disk.Blank, idxPath.Child("blank"))...)
			}
		}
		if disk.CloudInit != nil {
			cloudInitPath := idxPath.Child("cloudInit")
			switch {
			case numSources > 0:
				allErrs = append(allErrs, field.Forbidden(cloudInitPath, "may not specify more than one source"))
			case cloudInitDisk >= 0:
				numSources++
				allErrs = append(allErrs, field.Forbidden(cloudInitPath, fmt.Sprintf("may not have more than one cloudInit disk (%s is one)", fldPath.Index(cloudInitDisk))))
			default:
				numSources++
				cloudInitDisk = i
				allErrs = append(allErrs, validateCloudInitSource(disk.CloudInit, cloudInitPath)...)
			}
		}
		if numSources == 0 {
			allErrs = append(allErrs, field.Required(idxPath, "must specify one source: image, hostPath, blank or cloudInit"))
		}
	}
	return allErrs
}

// validatePowerAction checks the last requested start, stop or restart.
func validatePowerAction(pa *vessel.PowerAction, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, validateEnum(pa.Type, supportedPowerActionType, fldPath.Child("type"))...)
	if pa.ID < 1 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("id"), pa.ID, "must be at least 1"))
	}
	if pa.RequestedAt.IsZero() {
		allErrs = append(allErrs, field.Required(fldPath.Child("requestedAt"), ""))
	}
	if pa.GracePeriodSeconds != nil {
		allErrs = append(allErrs, validateGracePeriod(*pa.GracePeriodSeconds, fldPath.Child("gracePeriodSeconds"))...)
	}
	if pa.Soft && pa.Type != vessel.PowerActionRestart {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("soft"), pa.Soft, "only a restart can be soft"))
	}
	if pa.Soft && pa.GracePeriodSeconds != nil {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("gracePeriodSeconds"), "a soft restart does not stop the guest"))
	}
	return allErrs
}

// validatePowerActionUpdate keeps action IDs increasing. The node agent
// records the last ID it carried out and ignores any ID not above it, so an
// action that reused or lowered an ID, or a cleared action whose successor
// starts again at 1, would silently never happen.
func validatePowerActionUpdate(newPA, oldPA *vessel.PowerAction, fldPath *field.Path) field.ErrorList {
	if oldPA == nil {
		return nil
	}
	if newPA == nil {
		return field.ErrorList{field.Forbidden(fldPath, "may not be removed once set: the node agent carries out actions by increasing id")}
	}
	if apiequality.Semantic.DeepEqual(newPA, oldPA) {
		return nil
	}
	if newPA.ID <= oldPA.ID {
		return field.ErrorList{field.Invalid(fldPath.Child("id"), newPA.ID, fmt.Sprintf("must be greater than %d when the action changes: the node agent carries out each id once", oldPA.ID))}
	}
	return nil
}

// hostPathsOf returns every host path a spec uses, and how.
func hostPathsOf(spec *vessel.VirtualMachineSpec) map[hostPathUse]bool {
	uses := map[hostPathUse]bool{}
	if k := spec.Kernel; k != nil {
		if k.Kernel.HostPath != nil {
			uses[hostPathUse{k.Kernel.HostPath.Path, false}] = true
		}
		if k.Initrd != nil && k.Initrd.HostPath != nil {
			uses[hostPathUse{k.Initrd.HostPath.Path, false}] = true
		}
	}
	for i := range spec.Disks {
		if hp := spec.Disks[i].HostPath; hp != nil {
			uses[hostPathUse{hp.Path, !spec.Disks[i].ReadOnly}] = true
		}
	}
	return uses
}
