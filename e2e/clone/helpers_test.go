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

package clone

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }

// guestDir is the test guest with the identity port handler.
func guestDir() string {
	if d := os.Getenv("VESSEL_GUEST_DIR"); d != "" {
		return d
	}
	return framework.GuestDir
}

// tenants: alice may edit in namespace A and bob may view it; bob may
// edit in namespace B.
const tenants = `apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: Namespace
metadata: {name: %[2]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-edit, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-view, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-edit, namespace: %[2]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
`

// vmManifest is a VM whose guest counts on its console, once a second.
// Each tick it also writes "MARK <hostname> <tick>" to one sector of its
// blank scratch disk and reads back another, past the page cache: the VM
// named demo writes sector 100 and reads 200, any other (its clones, once
// they took their new hostname) writes 200 and reads 100. A line reads
//
//	TICK <n> host=<hostname> other=[MARK <hostname> <tick>]
//
// so a clone shows its source's last mark frozen at the clone, and the
// source shows nothing: had they shared a disk, each would see the other's
// marks move.
const vmManifest = `apiVersion: vessel.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  runStrategy: Always
  cpus: 1
  memory: 128Mi
  terminationGracePeriodSeconds: 5
  kernel:
    kernel: {hostPath: {path: %[3]s/vmlinuz}}
    initrd: {hostPath: {path: %[3]s/initrd.img}}
    cmdline: console=ttyS0 quiet
  disks:
  - name: scratch
    blank: {size: 64Mi}
  - name: seed
    cloudInit:
      userData: |
        #!/bin/sh
        (
          i=0
          while :; do
            i=$((i+1)); h=$(hostname)
            if [ "$h" = %[2]s ]; then w=100; r=200; else w=200; r=100; fi
            printf '%%-511s\n' "MARK $h $i" | dd of=/dev/vda bs=512 seek=$w count=1 conv=notrunc,fsync 2>/dev/null
            echo 1 >/proc/sys/vm/drop_caches
            other=$(dd if=/dev/vda bs=512 skip=$r count=1 2>/dev/null | tr -d '\000' | sed 's/ *$//')
            echo "TICK $i host=$h other=[$other]"
            sleep 1
          done
        ) >/dev/console 2>&1 &
`

// tick is one TICK line of vmManifest's guest.
type tick struct {
	n     int
	host  string
	other string
}

var tickRE = regexp.MustCompile(`TICK (\d+) host=(\S+) other=\[([^\]\r\n]*)\]\r?\n`)

func ticks(log string) []tick {
	var out []tick
	for _, m := range tickRE.FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[1])
		out = append(out, tick{n: n, host: m[2], other: strings.TrimSpace(m[3])})
	}
	return out
}

func lastTick(log string) tick {
	t := ticks(log)
	if len(t) == 0 {
		return tick{}
	}
	return t[len(t)-1]
}

// markTick is the tick number in a "MARK host n" mark, -1 for none.
func markTick(mark string) int {
	f := strings.Fields(mark)
	if len(f) != 3 || f[0] != "MARK" {
		return -1
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		return -1
	}
	return n
}

func apply(t *testing.T, e *framework.Env, user, manifest string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	e.MustKubectl(t, user, "apply", "-f", path)
}

// waitCan waits for RBAC: kube-controller-manager aggregates vessel.dev's
// roles into edit and view asynchronously.
func waitCan(t *testing.T, e *framework.Env, user, ns, verb, resource, want string) {
	t.Helper()
	var out string
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		out, _ = e.Kubectl(t, user, "auth", "can-i", verb, resource, "-n", ns)
		return strings.TrimSpace(out) == want, nil
	})
	if err != nil {
		t.Fatalf("%s can-i %s %s in %s: %q, want %s", user, verb, resource, ns, out, want)
	}
}

// waitConsole waits until the VM's console log satisfies ok.
func waitConsole(t *testing.T, e *framework.Env, vm *v1alpha1.VirtualMachine, timeout time.Duration, what string, ok func(log string) bool) string {
	t.Helper()
	var log string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		log = e.ConsoleLog(vm)
		return ok(log), nil
	})
	if err != nil {
		if len(log) > 3000 {
			log = log[len(log)-3000:]
		}
		t.Fatalf("VM %s/%s: %s within %v; end of console:\n%s", vm.Namespace, vm.Name, what, timeout, log)
	}
	return log
}

func mustGuest(t *testing.T) string {
	t.Helper()
	dir := guestDir()
	init, err := os.ReadFile(filepath.Join(dir, "initrd.img"))
	if err != nil {
		t.Fatalf("the test guest: %v", err)
	}
	if len(init) == 0 {
		t.Fatalf("the test guest's initrd in %s is empty", dir)
	}
	return dir
}

func must(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}
