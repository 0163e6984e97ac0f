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

package libvirtd

import (
	"fmt"

	"github.com/vessel-vm/vessel/launcher/internal/atomicfile"
)

// writeConfig writes the daemons' configuration into the host's etc/
// (its /etc/libvirt), every time: the files follow the code.
func (h Host) writeConfig() error {
	for name, content := range map[string]string{
		"libvirtd.conf": libvirtdConf(h),
		"qemu.conf":     qemuConf(h),
		"virtlogd.conf": virtlogdConf(h),
	} {
		if err := atomicfile.Write(h.confFile(name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s of libvirt host %s: %w", name, h.Name, err)
		}
	}
	return nil
}

func header(h Host) string {
	return fmt.Sprintf("# libvirt host %s, written by Vessel's launcher (launcher/libvirtd) at every start.\n", h.Name)
}

// libvirtdConf: the host's own UUID (SMBIOS gives every host on the machine
// the same one, and migration refuses to go from a host to itself), only
// the default UNIX sockets in its private /run/libvirt, and warnings and
// errors on stderr, which the launcher keeps in the daemon's log.
func libvirtdConf(h Host) string {
	return header(h) + fmt.Sprintf(`host_uuid = %q
unix_sock_dir = "/run/libvirt"
log_outputs = "3:stderr"
`, h.UUID)
}

// qemuConf: QEMU runs as root (as the machine's libvirtd does, see
// hack/install-libvirt.sh), which spares the capabilities cache a rewrite
// at every domain start. remember_owner = 0 because hosts share files
// (the test guest's kernel, say) and would each keep their own record of
// an owner in the same extended attributes. stdio_handler = "logd": QEMU's
// output and the serial console logs go through the host's virtlogd,
// which keeps recording while libvirtd restarts.
//
// capability_filters hides QEMU's "unavailable-features" CPU property from
// libvirt. At every domain start (cold boots, restores, incoming
// migrations) libvirt reads the guest CPU back from QEMU before the guest
// runs; with that property it asks for each of the CPU's 409 features in a
// qom-get of its own, about 0.8 s of QMP round trips on these machines,
// while without it it reads the same CPUID words in two calls
// (feature-words, filtered-features), as it did for every QEMU before
// 4.1. QEMU's command line, the guest's CPU and the CPU libvirt verifies
// and records are the same either way (TestHostsSideBySide checks);
// the start is 0.8 s shorter. libvirt marks such domains tainted
// ("custom-hypervisor-feature"), as it already does for QEMU running as
// root. libvirt 11 with QEMU 10.1 reads the CPU in one call (qom-list-get)
// and will not need it.
func qemuConf(h Host) string {
	return header(h) + `user = "root"
group = "root"
remember_owner = 0
stdio_handler = "logd"
capability_filters = [ "cpu-unavailable-features" ]
`
}

func virtlogdConf(h Host) string {
	return header(h) + `log_outputs = "3:stderr"
`
}
