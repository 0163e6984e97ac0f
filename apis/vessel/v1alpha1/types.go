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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FinalizerNodeCleanup holds a bound VirtualMachine until its node agent has
// stopped the guest, undefined the domain and removed its disks.
const FinalizerNodeCleanup = "vessel.dev/node-cleanup"

// +genclient
// +genclient:method=Bind,verb=create,subresource=binding,input=VirtualMachineBinding,result=VirtualMachine
// +genclient:method=Start,verb=create,subresource=start,input=VirtualMachineActionOptions,result=VirtualMachine
// +genclient:method=Stop,verb=create,subresource=stop,input=VirtualMachineActionOptions,result=VirtualMachine
// +genclient:method=Restart,verb=create,subresource=restart,input=VirtualMachineActionOptions,result=VirtualMachine
// +genclient:method=Pause,verb=create,subresource=pause,input=VirtualMachineActionOptions,result=VirtualMachine
// +genclient:method=Unpause,verb=create,subresource=unpause,input=VirtualMachineActionOptions,result=VirtualMachine
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachine is a virtual machine run by a Vessel node agent through
// libvirt. Its spec is the desired machine and power state; its status is what
// the agent observed on the hypervisor.
type VirtualMachine struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired machine and power state.
	// +optional
	Spec VirtualMachineSpec `json:"spec,omitempty"`
	// Status is the state observed by the node agent. Read-only.
	// +optional
	Status VirtualMachineStatus `json:"status,omitempty"`
}

// RunStrategy says when the guest should run.
// +enum
type RunStrategy string

const (
	// RunStrategyAlways keeps the guest running; it is started again whenever it stops.
	RunStrategyAlways RunStrategy = "Always"
	// RunStrategyRerunOnFailure starts the guest again only when it crashed, not
	// when it shut itself down.
	RunStrategyRerunOnFailure RunStrategy = "RerunOnFailure"
	// RunStrategyManual runs the guest only after a start action and never
	// restarts it on its own.
	RunStrategyManual RunStrategy = "Manual"
	// RunStrategyHalted keeps the guest stopped.
	RunStrategyHalted RunStrategy = "Halted"
	// RunStrategyOnce runs the guest once; after it stops, it stays stopped
	// until a start action.
	RunStrategyOnce RunStrategy = "Once"
)

// Firmware is the firmware a guest boots with.
// +enum
type Firmware string

const (
	// FirmwareBIOS boots with SeaBIOS.
	FirmwareBIOS Firmware = "BIOS"
	// FirmwareUEFI boots with OVMF.
	FirmwareUEFI Firmware = "UEFI"
)

// VirtualMachineSpec is the desired state of a virtual machine.
type VirtualMachineSpec struct {
	// RunStrategy says when the guest should run: Always (default),
	// RerunOnFailure, Manual, Halted or Once. The stop action turns Always
	// into Halted and the start action turns Halted into Always.
	// +optional
	RunStrategy RunStrategy `json:"runStrategy,omitempty"`

	// CPUs is the number of virtual CPUs. Defaults to 1.
	// +optional
	CPUs int32 `json:"cpus,omitempty"`

	// Memory is the guest's memory, for example 128Mi or 2Gi. Defaults to 128Mi.
	// +optional
	Memory resource.Quantity `json:"memory,omitempty"`

	// Firmware is BIOS (default) or UEFI. Ignored when kernel is set.
	// +optional
	Firmware Firmware `json:"firmware,omitempty"`

	// Kernel boots the guest directly from a kernel (and initrd) instead of
	// from a disk's boot loader.
	// +optional
	Kernel *KernelBoot `json:"kernel,omitempty"`

	// Disks attached to the guest, in boot order.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +patchMergeKey=name
	// +patchStrategy=merge
	Disks []Disk `json:"disks,omitempty" patchStrategy:"merge" patchMergeKey:"name"`

	// Interfaces are the guest's network interfaces. With none given, the
	// guest gets one Managed interface named "default".
	// +optional
	// +listType=map
	// +listMapKey=name
	// +patchMergeKey=name
	// +patchStrategy=merge
	Interfaces []Interface `json:"interfaces,omitempty" patchStrategy:"merge" patchMergeKey:"name"`

	// NodeSelector limits the hypervisors this VM may be scheduled to: every
	// key/value must be among the Hypervisor's labels.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// NodeName is the Hypervisor this VM is bound to. It is set once, by the
	// scheduler through the binding subresource, and cannot be set on create.
	// +optional
	NodeName string `json:"nodeName,omitempty"`

	// TerminationGracePeriodSeconds is how long a stop waits for the guest to
	// power off after an ACPI shutdown request before it is forced off.
	// Defaults to 30.
	// +optional
	TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`

	// Paused asks for the guest's virtual CPUs to be suspended. Set by the
	// pause and unpause actions.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// PowerAction is the last start, stop or restart requested through the
	// VM's action subresources. The node agent carries each one out once.
	// +optional
	PowerAction *PowerAction `json:"powerAction,omitempty"`
}

// PowerActionType is a start, stop or restart request.
// +enum
type PowerActionType string

const (
	// PowerActionStart asks for the guest to run.
	PowerActionStart PowerActionType = "Start"
	// PowerActionStop asks for the guest to stop.
	PowerActionStop PowerActionType = "Stop"
	// PowerActionRestart asks for the running guest to be restarted.
	PowerActionRestart PowerActionType = "Restart"
)

// PowerAction is one start, stop or restart request.
type PowerAction struct {
	// Type is Start, Stop or Restart.
	Type PowerActionType `json:"type"`
	// ID increases by one with every action on this VM; the agent records the
	// last ID it carried out in status.observedPowerActionID.
	ID int64 `json:"id"`
	// RequestedAt is when the action was requested.
	RequestedAt metav1.Time `json:"requestedAt"`
	// GracePeriodSeconds overrides spec.terminationGracePeriodSeconds for this
	// stop or restart. Zero forces the guest off at once.
	// +optional
	GracePeriodSeconds *int64 `json:"gracePeriodSeconds,omitempty"`
	// Soft makes a restart a reboot of the guest's operating system through
	// the QEMU guest agent: the QEMU process and the VM's devices stay.
	// +optional
	Soft bool `json:"soft,omitempty"`
}

// KernelBoot boots a guest directly from a kernel image.
type KernelBoot struct {
	// Kernel is the kernel image.
	Kernel FileSource `json:"kernel"`
	// Initrd is the initial ramdisk, if any.
	// +optional
	Initrd *FileSource `json:"initrd,omitempty"`
	// Cmdline is the kernel command line, for example "console=ttyS0".
	// +optional
	Cmdline string `json:"cmdline,omitempty"`
}

// FileSource is a file the node agent fetches or finds on the host. Exactly
// one member must be set.
type FileSource struct {
	// Image is a file downloaded from a URL and checked against its sha256.
	// +optional
	Image *ImageSource `json:"image,omitempty"`
	// HostPath is a file on the hypervisor host, under one of the agent's
	// allowed roots.
	// +optional
	HostPath *HostPathSource `json:"hostPath,omitempty"`
}

// ImageSource is an image downloaded over HTTP(S) into the node's image cache.
type ImageSource struct {
	// URL to download from (http or https). It must reach a public address:
	// loopback, link-local (169.254.169.254), private and other non-public
	// addresses are refused, at connect time and after every redirect,
	// unless the node's operator allows them (--image-allowed-cidrs).
	URL string `json:"url"`
	// SHA256 is the hex sha256 of the file; the download is refused when it
	// does not match.
	SHA256 string `json:"sha256"`
	// Format of a disk image: raw (the default for disks) or qcow2. It is
	// declared, never detected: an image in another format, a raw image
	// that starts like another format's image, and a qcow2 image with a
	// backing file or an external data file are refused. Not allowed for a
	// kernel or initrd, which are files, not disks.
	// +optional
	Format DiskFormat `json:"format,omitempty"`
}

// HostPathSource is a file on the hypervisor host.
type HostPathSource struct {
	// Path is an absolute, clean path. A kernel, an initrd or a readOnly disk
	// may lie under a shared root (--allowed-host-path-roots, read-only to
	// VMs) or under <writable root>/<namespace>/ (--writable-host-path-roots);
	// a writable disk only under the latter. Symbolic links leading out of
	// these directories are refused.
	Path string `json:"path"`
	// Format of a disk: raw (the default for disks) or qcow2. It is
	// declared, never detected: QEMU reads a raw disk as raw whatever its
	// guest wrote into it, and a qcow2 disk with a backing file or an
	// external data file is refused. Not allowed for a kernel or initrd.
	// +optional
	Format DiskFormat `json:"format,omitempty"`
}

// DiskFormat is how QEMU reads a disk file.
// +enum
type DiskFormat string

const (
	// DiskFormatRaw is a plain disk image (default).
	DiskFormatRaw DiskFormat = "raw"
	// DiskFormatQCOW2 is a self-contained qcow2 image: no backing file, no
	// external data file.
	DiskFormatQCOW2 DiskFormat = "qcow2"
)

// BlankSource is an empty disk.
type BlankSource struct {
	// Size of the disk, for example 1Gi.
	Size resource.Quantity `json:"size"`
}

// CloudInitSource is a NoCloud seed (an ISO labelled "cidata") attached as a
// read-only CD-ROM.
type CloudInitSource struct {
	// UserData is the cloud-init user data, for example "#cloud-config ..." or
	// a shell script starting with "#!". Anyone who may read the VM reads
	// it: put secrets in userDataSecretRef instead.
	// +optional
	UserData string `json:"userData,omitempty"`
	// UserDataSecretRef takes the user data from a key of a Secret in the
	// VM's namespace instead of from userData. Only the node agent of the
	// hypervisor the VM is bound to obtains it, through the VM's userdata
	// subresource; readers of the VM see only this reference.
	// +optional
	UserDataSecretRef *SecretKeyReference `json:"userDataSecretRef,omitempty"`
	// NetworkData is the cloud-init network configuration (version 2).
	// +optional
	NetworkData string `json:"networkData,omitempty"`
}

// SecretKeyReference names a key of a Secret in the referring object's
// namespace.
type SecretKeyReference struct {
	// Name of the Secret.
	Name string `json:"name"`
	// Key in the Secret's data. Defaults to "userdata".
	// +optional
	Key string `json:"key,omitempty"`
}

// DiskBus is the bus a disk is attached to.
// +enum
type DiskBus string

const (
	// DiskBusVirtio is a paravirtualized virtio-blk disk (default).
	DiskBusVirtio DiskBus = "virtio"
	// DiskBusSATA is an emulated SATA disk.
	DiskBusSATA DiskBus = "sata"
	// DiskBusSCSI is a virtio-scsi disk.
	DiskBusSCSI DiskBus = "scsi"
)

// Disk is a disk attached to the guest. Exactly one source (image, hostPath,
// blank, cloudInit) must be set.
type Disk struct {
	// Name identifies the disk within the VM (a DNS label).
	Name string `json:"name"`
	// Bus is virtio (default), sata or scsi. Cloud-init seeds are always a
	// SATA CD-ROM.
	// +optional
	Bus DiskBus `json:"bus,omitempty"`
	// ReadOnly attaches the disk read-only.
	// +optional
	ReadOnly bool `json:"readOnly,omitempty"`
	// Image is a disk image downloaded once into the node's image cache; the
	// VM writes to its own copy-on-write overlay.
	// +optional
	Image *ImageSource `json:"image,omitempty"`
	// HostPath is an image file on the host, used in place.
	// +optional
	HostPath *HostPathSource `json:"hostPath,omitempty"`
	// Blank is a new empty disk of the given size.
	// +optional
	Blank *BlankSource `json:"blank,omitempty"`
	// CloudInit is a NoCloud seed built from the given user and network data.
	// +optional
	CloudInit *CloudInitSource `json:"cloudInit,omitempty"`
}

// InterfaceType is how an interface is connected.
// +enum
type InterfaceType string

const (
	// InterfaceTypeManaged connects to the network the node agent manages
	// on the VM's hypervisor (default): one bridge per namespace, an
	// address from the agent's DHCP server (reported in status), outbound
	// NAT, reachable from the other VMs of the same namespace on that
	// hypervisor and from nothing else; the guest cannot use another MAC or
	// IP address than the ones it was given.
	InterfaceTypeManaged InterfaceType = "Managed"
	// InterfaceTypeUser is QEMU user-mode NAT networking: outbound only, no
	// host setup needed, no address the agent can vouch for.
	InterfaceTypeUser InterfaceType = "User"
	// InterfaceTypeBridge connects to an existing host bridge.
	InterfaceTypeBridge InterfaceType = "Bridge"
)

// Interface is a guest network interface.
type Interface struct {
	// Name identifies the interface within the VM (a DNS label).
	Name string `json:"name"`
	// Type is Managed (default: the hypervisor's managed network, with a
	// DHCP address in status), User (QEMU user-mode NAT, outbound only) or
	// Bridge (an existing host bridge the operator allows).
	// +optional
	Type InterfaceType `json:"type,omitempty"`
	// Bridge is the host bridge to connect to; required for type Bridge.
	// +optional
	Bridge string `json:"bridge,omitempty"`
	// MACAddress is the interface's MAC address; generated when empty.
	// +optional
	MACAddress string `json:"macAddress,omitempty"`
}

// VirtualMachinePhase is a short summary of where a VM is in its life.
// +enum
type VirtualMachinePhase string

const (
	// VirtualMachinePending: accepted, not yet bound to a hypervisor.
	VirtualMachinePending VirtualMachinePhase = "Pending"
	// VirtualMachineScheduled: bound to a hypervisor whose agent has not acted yet.
	VirtualMachineScheduled VirtualMachinePhase = "Scheduled"
	// VirtualMachineProvisioning: the agent is preparing disks.
	VirtualMachineProvisioning VirtualMachinePhase = "Provisioning"
	// VirtualMachineStarting: the domain is being started.
	VirtualMachineStarting VirtualMachinePhase = "Starting"
	// VirtualMachineRunning: the guest runs.
	VirtualMachineRunning VirtualMachinePhase = "Running"
	// VirtualMachineMigrating: the guest runs and is moving to another
	// hypervisor (a VirtualMachineMigration).
	VirtualMachineMigrating VirtualMachinePhase = "Migrating"
	// VirtualMachinePaused: the guest's CPUs are suspended.
	VirtualMachinePaused VirtualMachinePhase = "Paused"
	// VirtualMachineStopping: the guest is being shut down.
	VirtualMachineStopping VirtualMachinePhase = "Stopping"
	// VirtualMachineStopped: the domain exists and is shut off.
	VirtualMachineStopped VirtualMachinePhase = "Stopped"
	// VirtualMachineFailed: the VM cannot run; see its conditions.
	VirtualMachineFailed VirtualMachinePhase = "Failed"
)

// Condition types of a VirtualMachine.
const (
	// VirtualMachineConditionScheduled is True once the VM is bound to a hypervisor.
	VirtualMachineConditionScheduled = "Scheduled"
	// VirtualMachineConditionProvisioned is True once all disks are ready.
	VirtualMachineConditionProvisioned = "Provisioned"
	// VirtualMachineConditionReady is True while the guest runs.
	VirtualMachineConditionReady = "Ready"
	// VirtualMachineConditionPaused is True while the guest is paused.
	VirtualMachineConditionPaused = "Paused"
	// VirtualMachineConditionAgentConnected is True while the QEMU guest
	// agent in the guest answers (status.guestOSInfo is filled in then).
	VirtualMachineConditionAgentConnected = "AgentConnected"
)

// ReasonCrashLoopBackOff is the reason of a False Ready condition while
// the agent waits (until status.nextStartTime) before it starts again a
// guest that keeps stopping right after it starts.
const ReasonCrashLoopBackOff = "CrashLoopBackOff"

// VirtualMachineStatus is the observed state of a virtual machine.
type VirtualMachineStatus struct {
	// Phase is a short summary of the VM's state.
	// +optional
	Phase VirtualMachinePhase `json:"phase,omitempty"`
	// Conditions are the detailed observations (Scheduled, Provisioned, Ready, Paused).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchMergeKey=type
	// +patchStrategy=merge
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
	// ObservedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// ObservedPowerActionID is the ID of the last power action carried out.
	// +optional
	ObservedPowerActionID int64 `json:"observedPowerActionID,omitempty"`
	// NodeName is the hypervisor the VM runs on.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// StartedAt is when the guest was last started.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// StopReason says why the guest last stopped: Requested, GuestShutdown or Crashed.
	// +optional
	StopReason string `json:"stopReason,omitempty"`
	// RestartCount is how many times the agent started the guest again
	// after it stopped on its own (runStrategy Always or RerunOnFailure).
	// It goes back to zero once a guest has run for ten minutes.
	// +optional
	RestartCount int32 `json:"restartCount,omitempty"`
	// NextStartTime is when the agent starts again a guest that keeps
	// stopping right after it starts: the Ready condition then has reason
	// CrashLoopBackOff, and the delay doubles with every restart (10s up
	// to 5m, as for a pod's containers).
	// +optional
	NextStartTime *metav1.Time `json:"nextStartTime,omitempty"`
	// Interfaces lists the guest's network interfaces and the addresses seen on them.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +patchMergeKey=name
	// +patchStrategy=merge
	Interfaces []InterfaceStatus `json:"interfaces,omitempty" patchStrategy:"merge" patchMergeKey:"name"`
	// Disks reports each disk's provisioning state.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +patchMergeKey=name
	// +patchStrategy=merge
	Disks []DiskStatus `json:"disks,omitempty" patchStrategy:"merge" patchMergeKey:"name"`
	// ConsoleLogBytes is how much recent console output the agent holds for
	// `kubectl vm logs`.
	// +optional
	ConsoleLogBytes int64 `json:"consoleLogBytes,omitempty"`
	// Snapshots names this VM's snapshots that are ready to use.
	// +optional
	// +listType=set
	Snapshots []string `json:"snapshots,omitempty"`
	// GuestOSInfo is what the QEMU guest agent reports about the guest's
	// operating system; kept from the last time the agent answered.
	// +optional
	GuestOSInfo *GuestOSInfo `json:"guestOSInfo,omitempty"`
}

// GuestOSInfo describes the guest's operating system as reported by the
// QEMU guest agent (guest-get-osinfo and guest-get-host-name).
type GuestOSInfo struct {
	// Name is the operating system's name (os-release NAME).
	// +optional
	Name string `json:"name,omitempty"`
	// PrettyName is its human-readable name (os-release PRETTY_NAME).
	// +optional
	PrettyName string `json:"prettyName,omitempty"`
	// ID is its short identifier (os-release ID).
	// +optional
	ID string `json:"id,omitempty"`
	// Version is its version (os-release VERSION).
	// +optional
	Version string `json:"version,omitempty"`
	// VersionID is its version number (os-release VERSION_ID).
	// +optional
	VersionID string `json:"versionID,omitempty"`
	// KernelRelease is the running kernel's release (uname -r).
	// +optional
	KernelRelease string `json:"kernelRelease,omitempty"`
	// KernelVersion is the running kernel's version (uname -v).
	// +optional
	KernelVersion string `json:"kernelVersion,omitempty"`
	// Machine is the hardware name (uname -m).
	// +optional
	Machine string `json:"machine,omitempty"`
	// Hostname is the guest's host name.
	// +optional
	Hostname string `json:"hostname,omitempty"`
}

// InterfaceStatus is an observed network interface.
type InterfaceStatus struct {
	// Name of the interface in spec.
	Name string `json:"name"`
	// MACAddress of the interface.
	// +optional
	MACAddress string `json:"macAddress,omitempty"`
	// IPAddress is the interface's primary address: the first of
	// IPAddresses.
	// +optional
	IPAddress string `json:"ipAddress,omitempty"`
	// IPAddresses are the interface's addresses, each with where it was
	// learnt. Only addresses from sources the agent trusts are listed.
	// +optional
	// +listType=atomic
	IPAddresses []IPAddress `json:"ipAddresses,omitempty"`
}

// IPAddressSource says where an interface address was learnt.
// +enum
type IPAddressSource string

const (
	// IPAddressSourceDHCP is a lease of the node agent's own DHCP server on
	// the managed network: the guest can use no other address there.
	IPAddressSourceDHCP IPAddressSource = "DHCP"
	// IPAddressSourceGuestAgent is reported by the QEMU guest agent inside
	// the guest: informative, the guest controls it.
	IPAddressSourceGuestAgent IPAddressSource = "GuestAgent"
)

// IPAddress is one address of an interface.
type IPAddress struct {
	// Address is an IPv4 or IPv6 address.
	Address string `json:"address"`
	// Source is where the address was learnt: DHCP or GuestAgent.
	Source IPAddressSource `json:"source"`
}

// DiskPhase is where a disk is in provisioning.
// +enum
type DiskPhase string

const (
	// DiskPending: not yet started.
	DiskPending DiskPhase = "Pending"
	// DiskImporting: the image is being downloaded.
	DiskImporting DiskPhase = "Importing"
	// DiskReady: the disk can be attached.
	DiskReady DiskPhase = "Ready"
	// DiskFailed: the disk could not be provisioned; see message.
	DiskFailed DiskPhase = "Failed"
)

// DiskStatus is a disk's provisioning state.
type DiskStatus struct {
	// Name of the disk in spec.
	Name string `json:"name"`
	// Phase is Pending, Importing, Ready or Failed.
	// +optional
	Phase DiskPhase `json:"phase,omitempty"`
	// Progress of an image import, for example "45%".
	// +optional
	Progress string `json:"progress,omitempty"`
	// Message explains a failure.
	// +optional
	Message string `json:"message,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineList is a list of virtual machines.
type VirtualMachineList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items is the list of virtual machines.
	Items []VirtualMachine `json:"items"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineBinding binds a virtual machine to a hypervisor. It is posted
// to a VM's binding subresource, once, by the scheduler.
type VirtualMachineBinding struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata; name must be the VM's name.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Target is the name of the Hypervisor to bind to.
	Target string `json:"target"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineActionOptions is the body of the start, stop, restart, pause
// and unpause subresources.
type VirtualMachineActionOptions struct {
	metav1.TypeMeta `json:",inline"`
	// GracePeriodSeconds overrides spec.terminationGracePeriodSeconds for a
	// stop or restart. Zero forces the guest off at once.
	// +optional
	GracePeriodSeconds *int64 `json:"gracePeriodSeconds,omitempty"`
	// Soft, for a restart, reboots the guest's operating system through the
	// QEMU guest agent instead of power-cycling the machine. The VM's
	// AgentConnected condition must be True.
	// +optional
	Soft bool `json:"soft,omitempty"`
}

// +k8s:conversion-gen:explicit-from=net/url.Values
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineConsoleOptions are the query parameters of the console subresource.
type VirtualMachineConsoleOptions struct {
	metav1.TypeMeta `json:",inline"`
	// TailBytes is how much recent console output to replay before live
	// output; 0 replays nothing.
	// +optional
	TailBytes int64 `json:"tailBytes,omitempty"`
	// Force takes over the console input from other attached sessions.
	// +optional
	Force bool `json:"force,omitempty"`
	// ReadOnly attaches without input: output only.
	// +optional
	ReadOnly bool `json:"readOnly,omitempty"`
}

// +k8s:conversion-gen:explicit-from=net/url.Values
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachinePortForwardOptions are the query parameters of the
// portforward subresource, as PodPortForwardOptions are for pods.
type VirtualMachinePortForwardOptions struct {
	metav1.TypeMeta `json:",inline"`
	// Ports are the guest's TCP ports to forward (WebSocket clients name
	// them here; SPDY clients in each stream's headers).
	// +optional
	// +listType=atomic
	Ports []int32 `json:"ports,omitempty"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineSnapshot is a point-in-time copy of a VM's disks and, for a
// running VM, its memory.
type VirtualMachineSnapshot struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec says which VM to snapshot and how.
	// +optional
	Spec VirtualMachineSnapshotSpec `json:"spec,omitempty"`
	// Status is the snapshot's progress. Read-only.
	// +optional
	Status VirtualMachineSnapshotStatus `json:"status,omitempty"`
}

// SnapshotDeletionPolicy says what happens to the snapshot data when the
// VirtualMachineSnapshot object is deleted.
// +enum
type SnapshotDeletionPolicy string

const (
	// SnapshotDeletionPolicyDelete removes the snapshot data with the object (default).
	SnapshotDeletionPolicyDelete SnapshotDeletionPolicy = "Delete"
	// SnapshotDeletionPolicyRetain keeps the snapshot data on the hypervisor.
	SnapshotDeletionPolicyRetain SnapshotDeletionPolicy = "Retain"
)

// VirtualMachineSnapshotSpec is the desired snapshot.
type VirtualMachineSnapshotSpec struct {
	// VirtualMachineName is the VM, in the same namespace, to snapshot.
	VirtualMachineName string `json:"virtualMachineName"`
	// IncludeMemory also saves the guest's memory and device state when the VM
	// runs, so a restore resumes the guest where it was. Defaults to true.
	// +optional
	IncludeMemory *bool `json:"includeMemory,omitempty"`
	// DeletionPolicy is Delete (default) or Retain.
	// +optional
	DeletionPolicy SnapshotDeletionPolicy `json:"deletionPolicy,omitempty"`
}

// SnapshotPhase is where a snapshot or restore is.
// +enum
type SnapshotPhase string

const (
	// SnapshotPending: not yet started.
	SnapshotPending SnapshotPhase = "Pending"
	// SnapshotInProgress: being taken.
	SnapshotInProgress SnapshotPhase = "InProgress"
	// SnapshotSucceeded: done.
	SnapshotSucceeded SnapshotPhase = "Succeeded"
	// SnapshotFailed: failed; see error.
	SnapshotFailed SnapshotPhase = "Failed"
)

// SnapshotConditionFilesystemsFrozen is True when the guest's filesystems
// were frozen through the QEMU guest agent while the snapshot was taken (and
// thawed after it), so the disks hold no half-written data; False, with the
// reason, when they were not.
const SnapshotConditionFilesystemsFrozen = "FilesystemsFrozen"

// VirtualMachineSnapshotStatus is the observed state of a snapshot.
type VirtualMachineSnapshotStatus struct {
	// Phase is Pending, InProgress, Succeeded or Failed.
	// +optional
	Phase SnapshotPhase `json:"phase,omitempty"`
	// ReadyToUse is true when the snapshot can be restored.
	// +optional
	ReadyToUse bool `json:"readyToUse,omitempty"`
	// CreationTime is when the snapshot was taken.
	// +optional
	CreationTime *metav1.Time `json:"creationTime,omitempty"`
	// Size is the space the snapshot takes on the hypervisor.
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`
	// MemoryIncluded is true when the snapshot holds the guest's memory.
	// +optional
	MemoryIncluded bool `json:"memoryIncluded,omitempty"`
	// VirtualMachineUID is the UID of the VM the snapshot was taken of.
	// +optional
	VirtualMachineUID string `json:"virtualMachineUID,omitempty"`
	// NodeName is the hypervisor holding the snapshot data.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// Error says why the snapshot failed.
	// +optional
	Error string `json:"error,omitempty"`
	// Conditions are detailed observations.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchMergeKey=type
	// +patchStrategy=merge
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineSnapshotList is a list of snapshots.
type VirtualMachineSnapshotList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items is the list of snapshots.
	Items []VirtualMachineSnapshot `json:"items"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineRestore returns a VM to the state saved in one of its snapshots.
type VirtualMachineRestore struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec names the VM and the snapshot.
	// +optional
	Spec VirtualMachineRestoreSpec `json:"spec,omitempty"`
	// Status is the restore's progress. Read-only.
	// +optional
	Status VirtualMachineRestoreStatus `json:"status,omitempty"`
}

// VirtualMachineRestoreSpec is the desired restore.
type VirtualMachineRestoreSpec struct {
	// VirtualMachineName is the VM, in the same namespace, to restore.
	VirtualMachineName string `json:"virtualMachineName"`
	// SnapshotName is the VirtualMachineSnapshot, of that VM and in the same
	// namespace, to restore from.
	SnapshotName string `json:"snapshotName"`
}

// VirtualMachineRestoreStatus is the observed state of a restore.
type VirtualMachineRestoreStatus struct {
	// Phase is Pending, InProgress, Succeeded or Failed.
	// +optional
	Phase SnapshotPhase `json:"phase,omitempty"`
	// Complete is true once the VM has been restored.
	// +optional
	Complete bool `json:"complete,omitempty"`
	// RestoreTime is when the restore finished.
	// +optional
	RestoreTime *metav1.Time `json:"restoreTime,omitempty"`
	// Error says why the restore failed.
	// +optional
	Error string `json:"error,omitempty"`
	// Conditions are detailed observations.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchMergeKey=type
	// +patchStrategy=merge
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineRestoreList is a list of restores.
type VirtualMachineRestoreList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items is the list of restores.
	Items []VirtualMachineRestore `json:"items"`
}

// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Hypervisor is a host that runs virtual machines, registered and kept fresh
// by its node agent. Its labels are matched by VM nodeSelectors.
type Hypervisor struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Spec holds what an administrator controls.
	// +optional
	Spec HypervisorSpec `json:"spec,omitempty"`
	// Status is what the agent reports. Read-only for users.
	// +optional
	Status HypervisorStatus `json:"status,omitempty"`
}

// HypervisorSpec is what an administrator controls about a hypervisor.
type HypervisorSpec struct {
	// Unschedulable keeps new VMs off this hypervisor; running VMs stay.
	// +optional
	Unschedulable bool `json:"unschedulable,omitempty"`
}

// HypervisorResources are amounts of the resources VMs consume.
type HypervisorResources struct {
	// CPUs is a number of virtual CPUs.
	// +optional
	CPUs int32 `json:"cpus,omitempty"`
	// Memory is an amount of guest memory.
	// +optional
	Memory resource.Quantity `json:"memory,omitempty"`
	// VMs is a number of virtual machines.
	// +optional
	VMs int32 `json:"vms,omitempty"`
}

// Condition types of a Hypervisor.
const (
	// HypervisorConditionReady is True while the agent heartbeats.
	HypervisorConditionReady = "Ready"
)

// HypervisorStatus is what a node agent reports about its host.
type HypervisorStatus struct {
	// Capacity is what the host has.
	// +optional
	Capacity HypervisorResources `json:"capacity,omitempty"`
	// Allocatable is what VMs may use: capacity less the agent's reserve.
	// vCPUs may exceed capacity: the agent overcommits them by its CPU
	// allocation ratio.
	// +optional
	Allocatable HypervisorResources `json:"allocatable,omitempty"`
	// Allocated is what the VMs bound to this hypervisor ask for, as counted
	// by its agent.
	// +optional
	Allocated HypervisorResources `json:"allocated,omitempty"`
	// DaemonEndpoint is the host:port of the agent's HTTPS stream server,
	// used by the apiserver for consoles.
	// +optional
	DaemonEndpoint string `json:"daemonEndpoint,omitempty"`
	// MigrationEndpoint is the host:port on the hypervisors' fabric where
	// the agent accepts incoming live migrations (mutual TLS, from other
	// hypervisors' agents only). Empty: this hypervisor cannot be a
	// migration target.
	// +optional
	MigrationEndpoint string `json:"migrationEndpoint,omitempty"`
	// LibvirtVersion is the libvirt daemon's version.
	// +optional
	LibvirtVersion string `json:"libvirtVersion,omitempty"`
	// QEMUVersion is the hypervisor (QEMU) version.
	// +optional
	QEMUVersion string `json:"qemuVersion,omitempty"`
	// AgentVersion is the vessel-agent's version.
	// +optional
	AgentVersion string `json:"agentVersion,omitempty"`
	// KVM is true when a real probe guest ran with hardware acceleration;
	// otherwise guests use TCG (software emulation).
	// +optional
	KVM bool `json:"kvm,omitempty"`
	// LastHeartbeatTime is when the agent last reported.
	// +optional
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`
	// Conditions: Ready is True while heartbeats arrive.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchMergeKey=type
	// +patchStrategy=merge
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// HypervisorList is a list of hypervisors.
type HypervisorList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items is the list of hypervisors.
	Items []Hypervisor `json:"items"`
}
