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

package vm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
)

// ipMarker is the line the test guest (and any image that follows its
// convention) prints on the serial console once DHCP on its first NIC
// worked. With user-mode networking libvirt has no DHCP lease to ask, so
// the console is where the address is learnt.
var ipMarker = []byte("VESSEL-IP ")

// maxConsoleScan bounds how much of a console log is read for the address.
const maxConsoleScan = 1 << 20

// consoleIP returns the last address announced in the console log, or "".
func consoleIP(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	return scanIP(io.LimitReader(f, maxConsoleScan))
}

func scanIP(r io.Reader) string {
	ip := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := bytes.TrimRight(sc.Bytes(), "\r")
		i := bytes.Index(line, ipMarker)
		if i < 0 {
			continue
		}
		fields := bytes.Fields(line[i+len(ipMarker):])
		if len(fields) == 0 {
			continue
		}
		if addr := net.ParseIP(string(fields[0])); addr != nil {
			ip = addr.String()
		}
	}
	return ip
}

// MACFor is macFor for the controllers that define a VM's domain
// themselves (clones): status reports the MACs macFor gives.
func MACFor(uid, nic, specMAC string) string { return macFor(uid, nic, specMAC) }

// macFor is the MAC address of a VM's interface: the one in spec, else one
// derived from the VM UID and the interface name, so it stays the same
// across redefinitions and agent restarts. 52:54:00 is QEMU's prefix.
func macFor(uid, nic, specMAC string) string {
	if specMAC != "" {
		return specMAC
	}
	h := sha256.Sum256([]byte(uid + "/" + nic))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}
