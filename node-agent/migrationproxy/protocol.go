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

package migrationproxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// Streams a connection may carry.
const (
	// StreamPrepare carries one PrepareRequest (after the header's reply)
	// and a second reply with its PrepareResponse.
	StreamPrepare = "prepare"
	// StreamLibvirt goes to the target's libvirtd socket (the source
	// libvirtd's peer-to-peer connection).
	StreamLibvirt = "libvirt"
	// StreamTCP goes to Header.Port on 127.0.0.1 in the target's network
	// namespace (QEMU's memory stream or NBD disk copy).
	StreamTCP = "tcp"
)

// Ports QEMU may be reached on through the proxy: libvirt's own default
// migration port range (qemu.conf migration_port_min/max). A peer cannot
// reach anything else of the target.
const (
	PortMin = 49152
	PortMax = 49215
)

// maxHeader bounds the first line of a connection.
const maxHeader = 4096

// maxPrepare bounds a prepare request (it carries small files: seed
// images, the console log, kernels kept in the agent's state directory).
const maxPrepare = 512 << 20

// Header opens every connection.
type Header struct {
	// Migration is the VirtualMachineMigration, namespace/name.
	Migration string `json:"migration"`
	// Stream is StreamPrepare, StreamLibvirt or StreamTCP.
	Stream string `json:"stream"`
	// Port is the port of a StreamTCP.
	Port int `json:"port,omitempty"`
}

// reply answers a Header: empty Error means the stream is open.
type reply struct {
	Error string `json:"error,omitempty"`
}

// PrepareRequest tells the target what to make ready before libvirt
// starts: the VM directory with its small files, empty disks the copy
// fills, and its Managed interfaces' ports.
type PrepareRequest struct {
	VMUID     string `json:"vmUID"`
	Namespace string `json:"namespace"`
	// Disks are created empty (qcow2 of the virtual size) for the copy.
	Disks []PrepareDisk `json:"disks,omitempty"`
	// Files are copied as they are.
	Files []PrepareFile `json:"files,omitempty"`
	// NICs are the Managed interfaces.
	NICs []PrepareNIC `json:"nics,omitempty"`
}

// PrepareDisk is a writable disk the migration copies.
type PrepareDisk struct {
	// Path is the file on the source.
	Path        string `json:"path"`
	VirtualSize int64  `json:"virtualSize"`
}

// PrepareFile is a file the target gets a copy of.
type PrepareFile struct {
	// Path is the file on the source.
	Path string `json:"path"`
	Data []byte `json:"data"`
	// Log is a console log: the domain writes a new one on the target,
	// which keeps this one next to it (LogBeforeMigration).
	Log bool `json:"log,omitempty"`
}

// LogBeforeMigration names the target's copy of a console log the source
// wrote before the guest moved.
func LogBeforeMigration(name string) string { return name + ".before-migration" }

// PrepareNIC is a Managed interface.
type PrepareNIC struct {
	Name string `json:"name"`
	MAC  string `json:"mac"`
	// IP is the address the guest leased on the source (for good), if
	// it did: the target keeps it if it can.
	IP string `json:"ip,omitempty"`
}

// PrepareResponse says where the files are on the target.
type PrepareResponse struct {
	// Paths maps source paths to target paths.
	Paths map[string]string `json:"paths"`
	// NICs maps MAC addresses to the target's bridge and tap device.
	NICs map[string]NICTarget `json:"nics,omitempty"`
	// HypervisorUID is the target's Hypervisor UID, for the domain's stamp.
	HypervisorUID string `json:"hypervisorUID"`
}

// NICTarget is where an interface plugs in on the target.
type NICTarget struct {
	Bridge string `json:"bridge"`
	Tap    string `json:"tap"`
}

func writeLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func readLine(r *bufio.Reader, limit int, v any) error {
	var line []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return err
		}
		line = append(line, chunk...)
		if len(line) > limit {
			return fmt.Errorf("line longer than %d bytes", limit)
		}
		if !isPrefix {
			break
		}
	}
	return json.Unmarshal(line, v)
}
