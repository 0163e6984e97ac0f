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
	"net"
	"net/netip"
	"strconv"

	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
)

// ValidateHypervisor validates a Hypervisor on create. Its name is also the
// node name VMs bind to and part of its agent's user name.
func ValidateHypervisor(h *vessel.Hypervisor) field.ErrorList {
	// The spec has only a boolean; there is nothing more to check.
	return apimachineryvalidation.ValidateObjectMeta(&h.ObjectMeta, false, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
}

// ValidateHypervisorUpdate validates an update of a Hypervisor's spec and metadata.
func ValidateHypervisorUpdate(newH, oldH *vessel.Hypervisor) field.ErrorList {
	return apimachineryvalidation.ValidateObjectMetaUpdate(&newH.ObjectMeta, &oldH.ObjectMeta, field.NewPath("metadata"))
}

// ValidateHypervisorStatusUpdate validates what an agent reports about its host.
func ValidateHypervisorStatusUpdate(newH, oldH *vessel.Hypervisor) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newH.ObjectMeta, &oldH.ObjectMeta, field.NewPath("metadata"))

	statusPath := field.NewPath("status")
	status := &newH.Status
	capacityPath, allocatablePath := statusPath.Child("capacity"), statusPath.Child("allocatable")
	capErrs := validateHypervisorResources(&status.Capacity, capacityPath)
	allocErrs := validateHypervisorResources(&status.Allocatable, allocatablePath)
	allErrs = append(allErrs, capErrs...)
	allErrs = append(allErrs, allocErrs...)
	if len(capErrs) == 0 && len(allocErrs) == 0 {
		allErrs = append(allErrs, validateAllocatableWithinCapacity(&status.Allocatable, &status.Capacity, allocatablePath)...)
	}
	// Allocated is a count, not a limit: it may exceed allocatable when VMs
	// were bound before the host shrank, so it is only checked for sign.
	allErrs = append(allErrs, validateHypervisorResources(&status.Allocated, statusPath.Child("allocated"))...)

	if status.MigrationEndpoint != "" {
		allErrs = append(allErrs, validateHostPort(status.MigrationEndpoint, statusPath.Child("migrationEndpoint"))...)
	}
	if status.DaemonEndpoint != "" {
		allErrs = append(allErrs, validateHostPort(status.DaemonEndpoint, statusPath.Child("daemonEndpoint"))...)
	}
	allErrs = append(allErrs, validateConditions(status.Conditions, statusPath.Child("conditions"))...)
	return allErrs
}

func validateHypervisorResources(r *vessel.HypervisorResources, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(int64(r.CPUs), fldPath.Child("cpus"))...)
	if r.Memory.Sign() < 0 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("memory"), r.Memory.String(), apimachineryvalidation.IsNegativeErrorMsg))
	}
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(int64(r.VMs), fldPath.Child("vms"))...)
	return allErrs
}

// validateAllocatableWithinCapacity checks that the agent's reserve is not
// negative. CPUs are exempt: hypervisors overcommit vCPUs (the agent's
// --cpu-allocation-ratio), never memory or the VM count.
func validateAllocatableWithinCapacity(alloc, capacity *vessel.HypervisorResources, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if cmpQuantities(alloc.Memory, capacity.Memory) > 0 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("memory"), alloc.Memory.String(), fmt.Sprintf("must not exceed capacity (%s)", capacity.Memory.String())))
	}
	if alloc.VMs > capacity.VMs {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("vms"), alloc.VMs, fmt.Sprintf("must not exceed capacity (%d)", capacity.VMs)))
	}
	return allErrs
}

// validateHostPort checks a host:port the apiserver dials: the host is an IP
// address or a DNS name, the port a number in 1..65535.
func validateHostPort(value string, fldPath *field.Path) field.ErrorList {
	host, port, err := net.SplitHostPort(value)
	if err != nil {
		return field.ErrorList{field.Invalid(fldPath, value, "must be host:port, e.g. 10.0.0.5:10250 or [fd00::5]:10250")}
	}
	var allErrs field.ErrorList
	if host == "" {
		allErrs = append(allErrs, field.Invalid(fldPath, value, "must include a host"))
	} else if _, err := netip.ParseAddr(host); err != nil && len(utilvalidation.IsDNS1123Subdomain(host)) != 0 {
		allErrs = append(allErrs, field.Invalid(fldPath, value, "host must be an IP address or a DNS name"))
	}
	if !isDecimal(port) {
		allErrs = append(allErrs, field.Invalid(fldPath, value, "port must be a decimal number"))
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		allErrs = append(allErrs, field.Invalid(fldPath, value, "port must be in the range 1..65535"))
	}
	return allErrs
}

func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
