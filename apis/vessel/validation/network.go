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
	"net"
	"slices"
	"strings"

	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
)

var supportedInterfaceTypes = []vessel.InterfaceType{vessel.InterfaceTypeManaged, vessel.InterfaceTypeUser, vessel.InterfaceTypeBridge}

// bridgePolicy decides which host bridges a VM may connect to.
type bridgePolicy struct {
	allowed []string
	// unchanged are the bridges the stored object already uses: narrowing
	// the server's list does not make existing VMs impossible to update
	// (or stop); their agents still refuse bridges they do not allow.
	unchanged map[string]bool
}

func newBridgePolicy(opts Options, old *vessel.VirtualMachineSpec) bridgePolicy {
	p := bridgePolicy{allowed: opts.AllowedBridges, unchanged: map[string]bool{}}
	if old != nil {
		for _, iface := range old.Interfaces {
			if iface.Type == vessel.InterfaceTypeBridge {
				p.unchanged[iface.Bridge] = true
			}
		}
	}
	return p
}

// check refuses a bridge the operator did not allow. A bridge puts the
// guest on whatever network it joins (cni0 is the pod network, docker0
// the host's containers), so only allow-listed ones are accepted.
func (p bridgePolicy) check(bridge string, fldPath *field.Path) field.ErrorList {
	if p.unchanged[bridge] || slices.Contains(p.allowed, bridge) {
		return nil
	}
	if len(p.allowed) == 0 {
		return field.ErrorList{field.Forbidden(fldPath, "this server allows no bridge interfaces: the operator allow-lists host bridges with --allowed-bridges")}
	}
	return field.ErrorList{field.NotSupported(fldPath, bridge, p.allowed)}
}

// validateInterfaces checks a VM's network interfaces.
func validateInterfaces(ifaces []vessel.Interface, bridges bridgePolicy, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if len(ifaces) > MaxInterfaces {
		allErrs = append(allErrs, field.TooMany(fldPath, len(ifaces), MaxInterfaces))
	}
	names := make(map[string]bool, len(ifaces))
	macs := make(map[string]bool, len(ifaces))
	for i := range ifaces {
		iface := &ifaces[i]
		idxPath := fldPath.Index(i)

		namePath := idxPath.Child("name")
		allErrs = append(allErrs, validateReferenceName(iface.Name, apimachineryvalidation.NameIsDNSLabel, namePath)...)
		if iface.Name != "" {
			if names[iface.Name] {
				allErrs = append(allErrs, field.Duplicate(namePath, iface.Name))
			}
			names[iface.Name] = true
		}

		allErrs = append(allErrs, validateEnum(iface.Type, supportedInterfaceTypes, idxPath.Child("type"))...)
		bridgePath := idxPath.Child("bridge")
		switch iface.Type {
		case vessel.InterfaceTypeBridge:
			if iface.Bridge == "" {
				allErrs = append(allErrs, field.Required(bridgePath, "the host bridge to connect to is required for type Bridge"))
			} else if errs := validateLinuxIfname(iface.Bridge, bridgePath); len(errs) > 0 {
				allErrs = append(allErrs, errs...)
			} else {
				allErrs = append(allErrs, bridges.check(iface.Bridge, bridgePath)...)
			}
		case vessel.InterfaceTypeManaged, vessel.InterfaceTypeUser:
			if iface.Bridge != "" {
				allErrs = append(allErrs, field.Forbidden(bridgePath, "may only be set for type Bridge"))
			}
		}

		if iface.MACAddress != "" {
			macPath := idxPath.Child("macAddress")
			macErrs := validateUnicastMAC(iface.MACAddress, macPath)
			allErrs = append(allErrs, macErrs...)
			if len(macErrs) == 0 {
				// Two NICs with one MAC confuse the guest and the bridge alike.
				mac := strings.ToLower(iface.MACAddress)
				if macs[mac] {
					allErrs = append(allErrs, field.Duplicate(macPath, iface.MACAddress))
				}
				macs[mac] = true
			}
		}
	}
	return allErrs
}

// validateLinuxIfname applies the kernel's dev_valid_name rules to a host
// interface name, and keeps it to printable ASCII since it goes into XML.
func validateLinuxIfname(name string, fldPath *field.Path) field.ErrorList {
	if len(name) > maxLinuxIfnameLength {
		return field.ErrorList{field.TooLong(fldPath, "", maxLinuxIfnameLength)}
	}
	if name == "." || name == ".." {
		return field.ErrorList{field.Invalid(fldPath, name, "must not be '.' or '..'")}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == ':' {
			return field.ErrorList{field.Invalid(fldPath, name, "must be a Linux interface name: printable ASCII without whitespace, '/' or ':'")}
		}
	}
	return nil
}

// validateUnicastMAC checks a MAC address a guest NIC can use: six
// colon-separated octets (the form libvirt accepts), unicast and not zero.
func validateUnicastMAC(value string, fldPath *field.Path) field.ErrorList {
	errs := validateMAC(value, fldPath)
	if len(errs) != 0 {
		return errs
	}
	hw, _ := net.ParseMAC(value)
	if hw[0]&1 != 0 {
		return field.ErrorList{field.Invalid(fldPath, value, "must be a unicast address (the low bit of the first octet must be 0)")}
	}
	if allZero(hw) {
		return field.ErrorList{field.Invalid(fldPath, value, "must not be all zeros")}
	}
	return nil
}

// validateMAC checks the form of a MAC address.
func validateMAC(value string, fldPath *field.Path) field.ErrorList {
	hw, err := net.ParseMAC(value)
	if err != nil || len(hw) != 6 || !strings.EqualFold(hw.String(), value) {
		return field.ErrorList{field.Invalid(fldPath, value, "must be six colon-separated hexadecimal octets, e.g. 52:54:00:12:34:56")}
	}
	return nil
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// validateInterfaceStatuses checks the interfaces an agent reports.
func validateInterfaceStatuses(ifaces []vessel.InterfaceStatus, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	names := make(map[string]bool, len(ifaces))
	for i := range ifaces {
		iface := &ifaces[i]
		idxPath := fldPath.Index(i)
		namePath := idxPath.Child("name")
		allErrs = append(allErrs, validateReferenceName(iface.Name, apimachineryvalidation.NameIsDNSLabel, namePath)...)
		if iface.Name != "" {
			if names[iface.Name] {
				allErrs = append(allErrs, field.Duplicate(namePath, iface.Name))
			}
			names[iface.Name] = true
		}
		if iface.MACAddress != "" {
			allErrs = append(allErrs, validateMAC(iface.MACAddress, idxPath.Child("macAddress"))...)
		}
		if iface.IPAddress != "" {
			allErrs = append(allErrs, utilvalidation.IsValidIP(idxPath.Child("ipAddress"), iface.IPAddress)...)
		}
	}
	return allErrs
}
