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

package rootfs

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bundleWithBusybox is a bundle as umoci writes one, whose root filesystem
// holds only a static busybox, running as 65532.
func bundleWithBusybox(t *testing.T) *Bundle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount namespaces, chroot)")
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs a static busybox (Debian busybox-static)")
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "rootfs", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rootfs", "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	config := map[string]any{
		"root": map[string]any{"path": "rootfs"},
		"process": map[string]any{
			"args": []string{"/bin/busybox"}, "cwd": "/", "env": []string{"PATH=/bin"},
			"user": map[string]any{"uid": 65532, "gid": 65532},
		},
	}
	data, _ = json.Marshal(config)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCommandRunsTheEntrypointAsThePodWould(t *testing.T) {
	b := bundleWithBusybox(t)
	volume := t.TempDir()
	if err := os.WriteFile(filepath.Join(volume, "tls.crt"), []byte("certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, err := b.Command(t.Context(), Options{
		Args: []string{"sh", "-c", `id -u; id -g; cat /etc/vessel/tls/tls.crt; echo; echo $EXTRA
			test -c /dev/null && echo devnull
			touch /written 2>/dev/null || echo root-ro
			touch /etc/vessel/tls/x 2>/dev/null || echo volume-ro
			test -e /proc/self/status && echo proc`},
		Env:            []string{"EXTRA=from-options"},
		Mounts:         []Mount{{Source: volume, Target: "/etc/vessel/tls", ReadOnly: true}},
		ReadOnlyRootfs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := "65532\n65532\ncertificate\nfrom-options\ndevnull\nroot-ro\nvolume-ro\nproc\n"
	if string(out) != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	if _, err := os.Stat(filepath.Join(b.Rootfs, "written")); err == nil {
		t.Error("the read-only root filesystem was written")
	}
}

func TestCommandAsRootWithAWritableRoot(t *testing.T) {
	b := bundleWithBusybox(t)
	cmd, err := b.Command(t.Context(), Options{Args: []string{"sh", "-c", "id -u; touch /written && echo written"}, AsRoot: true})
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "0\nwritten" {
		t.Errorf("%v: %q", err, out)
	}
}

// A process started from EnterArgv's parts ends up with the image
// program's command line, by which a supervisor recognizes it.
func TestEnterArgvLeavesTheProgramsCommandLine(t *testing.T) {
	b := bundleWithBusybox(t)
	enter, program, args, err := b.EnterArgv(Options{Args: []string{"sh", "-c", `x=$(tr '\0' ' ' </proc/$$/cmdline); echo "$x"`}, AsRoot: true})
	if err != nil {
		t.Fatal(err)
	}
	if program != "/bin/busybox" {
		t.Errorf("program = %q, want the image's entrypoint /bin/busybox", program)
	}
	out, err := exec.CommandContext(t.Context(), enter[0], append(append(enter[1:], program), args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "/bin/busybox sh -c ") {
		t.Errorf("the process's command line is %q, want the program's", out)
	}
}

func TestArgvRefusesRelativeMountTargets(t *testing.T) {
	b := &Bundle{Rootfs: "/nonexistent", Process: Process{Args: []string{"/x"}}}
	for _, target := range []string{"etc/x", "/etc/../../x"} {
		if _, err := b.Argv(Options{Mounts: []Mount{{Source: "/", Target: target}}}); err == nil {
			t.Errorf("mount target %q accepted", target)
		}
	}
}
