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

// Package fuzzer fills vessel.dev objects with random but plausible values
// for the API round-trip tests: enums take their defined values, one-of
// sources have exactly one member, and every field that defaulting would set
// is already set, so decoding (which defaults) gives back what was encoded.
package fuzzer

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"
	runtimeserializer "k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/randfill"

	"github.com/vessel-vm/vessel/apis/vessel"
)

// Funcs returns the fill functions for the vessel.dev group.
var Funcs = func(codecs runtimeserializer.CodecFactory) []interface{} {
	return []interface{}{
		func(s *vessel.VirtualMachineSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			s.RunStrategy = oneOf(c, vessel.RunStrategyAlways, vessel.RunStrategyRerunOnFailure, vessel.RunStrategyManual, vessel.RunStrategyHalted, vessel.RunStrategyOnce)
			s.CPUs = 1 + c.Int31n(256)
			s.Memory = *resource.NewQuantity((80+c.Int63n(64*1024))<<20, resource.BinarySI)
			s.Firmware = oneOf(c, vessel.FirmwareBIOS, vessel.FirmwareUEFI)
			if s.TerminationGracePeriodSeconds == nil {
				grace := c.Int63n(3601)
				s.TerminationGracePeriodSeconds = &grace
			}
			if len(s.Interfaces) == 0 {
				s.Interfaces = []vessel.Interface{{Name: "default", Type: vessel.InterfaceTypeManaged}}
			}
		},
		func(f *vessel.FileSource, c randfill.Continue) {
			*f = vessel.FileSource{}
			if c.Bool() {
				f.Image = imageSource(c)
			} else {
				f.HostPath = &vessel.HostPathSource{Path: "/var/lib/vessel/images/" + name(c)}
			}
		},
		func(d *vessel.Disk, c randfill.Continue) {
			*d = vessel.Disk{
				Name:     name(c),
				Bus:      oneOf(c, vessel.DiskBusVirtio, vessel.DiskBusSATA, vessel.DiskBusSCSI),
				ReadOnly: c.Bool(),
			}
			// Disks always have a declared format (defaulted); kernels and
			// initrds never do.
			format := oneOf(c, vessel.DiskFormatRaw, vessel.DiskFormatQCOW2)
			switch c.Intn(4) {
			case 0:
				d.Image = imageSource(c)
				d.Image.Format = format
			case 1:
				d.HostPath = &vessel.HostPathSource{Path: "/var/lib/vessel/disks/" + name(c) + ".img", Format: format}
			case 2:
				d.Blank = &vessel.BlankSource{Size: *resource.NewQuantity((1+c.Int63n(1024))<<30, resource.BinarySI)}
			default:
				d.CloudInit = &vessel.CloudInitSource{}
				c.Fill(d.CloudInit)
			}
		},
		func(r *vessel.SecretKeyReference, c randfill.Continue) {
			c.FillNoCustom(r)
			if r.Key == "" {
				r.Key = "userdata" // defaulted: an empty key does not round-trip
			}
		},
		func(i *vessel.Interface, c randfill.Continue) {
			*i = vessel.Interface{Name: name(c), Type: oneOf(c, vessel.InterfaceTypeManaged, vessel.InterfaceTypeUser, vessel.InterfaceTypeBridge)}
			if i.Type == vessel.InterfaceTypeBridge {
				i.Bridge = "br" + fmt.Sprint(c.Intn(100))
			}
			if c.Bool() {
				i.MACAddress = fmt.Sprintf("52:54:00:%02x:%02x:%02x", c.Intn(256), c.Intn(256), c.Intn(256))
			}
		},
		func(p *vessel.PowerAction, c randfill.Continue) {
			c.FillNoCustom(p)
			p.Type = oneOf(c, vessel.PowerActionStart, vessel.PowerActionStop, vessel.PowerActionRestart)
			p.ID = 1 + c.Int63n(1<<40)
			// Only a restart without a grace period can be soft.
			p.Soft = p.Soft && p.Type == vessel.PowerActionRestart && p.GracePeriodSeconds == nil
		},
		func(s *vessel.VirtualMachineStatus, c randfill.Continue) {
			c.FillNoCustom(s)
			s.Phase = oneOf(c, "", vessel.VirtualMachinePending, vessel.VirtualMachineScheduled, vessel.VirtualMachineProvisioning,
				vessel.VirtualMachineStarting, vessel.VirtualMachineRunning, vessel.VirtualMachinePaused,
				vessel.VirtualMachineStopping, vessel.VirtualMachineStopped, vessel.VirtualMachineFailed)
			s.StopReason = oneOf(c, "", "Requested", "GuestShutdown", "Crashed")
		},
		func(d *vessel.DiskStatus, c randfill.Continue) {
			c.FillNoCustom(d)
			d.Phase = oneOf(c, "", vessel.DiskPending, vessel.DiskImporting, vessel.DiskReady, vessel.DiskFailed)
		},
		func(s *vessel.VirtualMachineSnapshotSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.IncludeMemory == nil {
				include := c.Bool()
				s.IncludeMemory = &include
			}
			s.DeletionPolicy = oneOf(c, vessel.SnapshotDeletionPolicyDelete, vessel.SnapshotDeletionPolicyRetain)
		},
		func(s *vessel.VirtualMachineSnapshotStatus, c randfill.Continue) {
			c.FillNoCustom(s)
			s.Phase = snapshotPhase(c)
		},
		func(s *vessel.VirtualMachineRestoreStatus, c randfill.Continue) {
			c.FillNoCustom(s)
			s.Phase = snapshotPhase(c)
		},
		func(s *vessel.VirtualMachineCloneSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.Memory == nil {
				memory := c.Bool()
				s.Memory = &memory
			}
		},
		func(s *vessel.VirtualMachineCloneStatus, c randfill.Continue) {
			c.FillNoCustom(s)
			s.Phase = oneOf(c, "", vessel.ClonePending, vessel.CloneInProgress, vessel.CloneSucceeded, vessel.CloneFailed)
		},
		func(s *vessel.VirtualMachinePoolSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.Replicas == nil {
				replicas := c.Int31n(100)
				s.Replicas = &replicas
			}
		},
	}
}

func oneOf[T any](c randfill.Continue, values ...T) T {
	return values[c.Intn(len(values))]
}

func snapshotPhase(c randfill.Continue) vessel.SnapshotPhase {
	return oneOf(c, "", vessel.SnapshotPending, vessel.SnapshotInProgress, vessel.SnapshotSucceeded, vessel.SnapshotFailed)
}

// name returns a short DNS label.
func name(c randfill.Continue) string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 1+c.Intn(12))
	b[0] = letters[c.Intn(26)]
	for i := 1; i < len(b); i++ {
		b[i] = letters[c.Intn(len(letters))]
	}
	return string(b)
}

func imageSource(c randfill.Continue) *vessel.ImageSource {
	const hex = "0123456789abcdef"
	sum := make([]byte, 64)
	for i := range sum {
		sum[i] = hex[c.Intn(16)]
	}
	return &vessel.ImageSource{URL: "https://images.example.com/" + name(c) + ".qcow2", SHA256: string(sum)}
}
