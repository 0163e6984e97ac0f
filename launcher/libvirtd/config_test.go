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
	"slices"
	"strings"
	"testing"
)

func testHost() Host {
	return Host{
		Name:  "hv-1",
		Dir:   "/var/lib/vessel state/hypervisors/hv-1",
		Netns: "vessel-abc123-hv-1",
		UUID:  "6f1c2a8e-3b7d-4c1e-9a2f-0d4b5e6f7a8b",
	}
}

func TestConfigGivesEachHostItsOwnIdentity(t *testing.T) {
	h := testHost()
	conf := libvirtdConf(h)
	for _, want := range []string{`host_uuid = "6f1c2a8e-3b7d-4c1e-9a2f-0d4b5e6f7a8b"`, `unix_sock_dir = "/run/libvirt"`, `log_outputs = "3:stderr"`} {
		if !strings.Contains(conf, want+"\n") {
			t.Errorf("libvirtd.conf lacks %s:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "listen_tcp") || strings.Contains(conf, "listen_tls") {
		t.Errorf("libvirtd.conf opens a network listener:\n%s", conf)
	}
	q := qemuConf(h)
	for _, want := range []string{`user = "root"`, `group = "root"`, `remember_owner = 0`, `stdio_handler = "logd"`, `capability_filters = [ "cpu-unavailable-features" ]`} {
		if !strings.Contains(q, want+"\n") {
			t.Errorf("qemu.conf lacks %s:\n%s", want, q)
		}
	}
}

// The mount namespace puts each of the host's directories over libvirt's,
// quoted so that a state directory with a space in it works, and mounts
// /sys anew for the host's network namespace.
func TestMountScript(t *testing.T) {
	s := mountScript(testHost())
	for _, want := range []string{
		"mkdir -p '/etc/libvirt' && mount --bind '/var/lib/vessel state/hypervisors/hv-1/etc' '/etc/libvirt'",
		"mount --bind '/var/lib/vessel state/hypervisors/hv-1/run' '/run/libvirt'",
		"mount --bind '/var/lib/vessel state/hypervisors/hv-1/lib' '/var/lib/libvirt'",
		"mount --bind '/var/lib/vessel state/hypervisors/hv-1/cache' '/var/cache/libvirt'",
		"mount --bind '/var/lib/vessel state/hypervisors/hv-1/log' '/var/log/libvirt'",
		"mount -t sysfs sysfs /sys",
		"mount --move '/var/lib/vessel state/hypervisors/hv-1/ns/cgroup' /sys/fs/cgroup",
		"findmnt -rn -t nsfs",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("mount script lacks %q:\n%s", want, s)
		}
	}
	if !strings.HasPrefix(s, "set -e\n") {
		t.Errorf("mount script does not stop at the first failure:\n%s", s)
	}
	if got := shellQuote("it's"); got != `'it'\''s'` {
		t.Errorf("shellQuote(it's) = %s", got)
	}
}

// A daemon's command line enters both namespaces, then is the daemon's
// own, naming files in the host's directory (how the launcher tells its
// processes from others).
func TestCommands(t *testing.T) {
	h := testHost()
	for _, c := range []Command{h.VirtlogdCommand(), h.LibvirtdCommand()} {
		argv := c.Argv()
		if !strings.HasSuffix(argv[0], "nsenter") {
			t.Errorf("%v does not start with nsenter", argv)
		}
		for _, want := range []string{"--net=/run/netns/vessel-abc123-hv-1", "--mount=" + h.Dir + "/ns/mnt", "--"} {
			if !slices.Contains(c.Enter, want) {
				t.Errorf("Enter %v lacks %s", c.Enter, want)
			}
		}
		if len(c.Args) != 2 || !strings.HasPrefix(c.Args[0], "--config="+h.Dir+"/etc/") || !strings.HasPrefix(c.Args[1], "--pid-file="+h.Dir+"/run/") {
			t.Errorf("%s args %v: want --config and --pid-file in the host's directory", c.Path, c.Args)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := testHost().Validate(); err != nil {
		t.Errorf("valid host: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Host)
		want   string
	}{
		{"relative dir", func(h *Host) { h.Dir = "state/hv-1" }, "not absolute"},
		{"socket too long", func(h *Host) { h.Dir = "/" + strings.Repeat("d", 100) }, "more than a UNIX socket takes"},
		{"netns with a slash", func(h *Host) { h.Netns = "a/b" }, "network namespace name"},
		{"no uuid", func(h *Host) { h.UUID = "" }, "not a UUID"},
		{"no name", func(h *Host) { h.Name = "" }, "no name"},
	} {
		h := testHost()
		tc.change(&h)
		if err := h.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:              "/plain",
		`/with\040space`:      "/with space",
		`/tab\011and\134back`: "/tab\tand\\back",
		`/short\04`:           `/short\04`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
