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

package hypervisor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"k8s.io/apimachinery/pkg/util/wait"
	"libvirt.org/go/libvirtxml"

	"github.com/vessel-vm/vessel/node-agent/internal/needs"
)

// A running guest counting on its console is captured once and resumed as
// a new domain: the clone runs on from the count where the source was (no
// boot), with its own UUID, MAC, VM generation ID and disk overlay, the
// source runs on too, and the clone's guest acknowledges its new identity
// on the identity port.
func TestMemoryCloneOfARunningGuest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	l, _, guest, dir, src := runningSource(ctx, t)
	waitConsole(t, src.ConsoleLog, regexp.MustCompile(`TICK 3\r?\n`))

	imgDir := filepath.Join(dir, "image")
	start := time.Now()
	img, err := l.CaptureImage(ctx, src.Owner.UID, imgDir, true)
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	atCapture := lastTickIn(t, src.ConsoleLog)
	t.Logf("captured in %v, the source paused for %v, at tick %d", time.Since(start), img.Paused, atCapture)
	if d, err := l.Lookup(ctx, src.Owner.UID); err != nil || d.State != StateRunning {
		t.Fatalf("source after the capture: %+v, %v; want it running", d, err)
	}
	frozen := img.Disk("scratch")
	if frozen == nil || frozen.Format != "qcow2" || frozen.VirtualSize != 64<<20 {
		t.Fatalf("frozen disks: %+v", img.Disks)
	}
	if again, err := ReadCloneImage(imgDir); err != nil || again.SourceUID != src.Owner.UID || !again.Memory {
		t.Fatalf("read the image back: %+v, %v", again, err)
	}

	clone := cloneTestConfig(t, dir, guest, "clone")
	clone.Disks[0].BackingPath, clone.Disks[0].BackingFormat = frozen.Path, frozen.Format
	mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", frozen.Path, "-u", clone.Disks[0].Path, strconv.FormatInt(frozen.VirtualSize, 10))
	t.Cleanup(func() {
		_ = l.Destroy(context.Background(), clone.Owner.UID)
		_ = l.Undefine(context.Background(), clone.Owner.UID)
	})
	start = time.Now()
	if err := l.RestoreClone(ctx, img, clone, false, nil); err != nil {
		t.Fatalf("restore: %v", err)
	}
	t.Logf("restored in %v", time.Since(start))
	if d, err := l.Lookup(ctx, clone.Owner.UID); err != nil || d.State != StateRunning || d.Owner.Name != "clone" {
		t.Fatalf("clone: %+v, %v; want it running, owned by clone", d, err)
	}
	// Restoring again is a no-op.
	if err := l.RestoreClone(ctx, img, clone, false, nil); err != nil {
		t.Errorf("second restore: %v", err)
	}

	tick := regexp.MustCompile(`TICK (\d+)\r?\n`)
	waitConsole(t, clone.ConsoleLog, tick)
	log, _ := os.ReadFile(clone.ConsoleLog)
	if strings.Contains(string(log), "VESSEL-GUEST READY") {
		t.Errorf("the clone booted:\n%s", log)
	}
	first, _ := strconv.Atoi(tick.FindStringSubmatch(string(log))[1])
	if first < atCapture || first > atCapture+3 {
		t.Errorf("the clone's first tick is %d; the source was at %d when captured", first, atCapture)
	}
	before := lastTickIn(t, src.ConsoleLog)
	waitConsole(t, src.ConsoleLog, regexp.MustCompile(`TICK `+strconv.Itoa(before+1)+`\r?\n`))

	c, err := l.client()
	if err != nil {
		t.Fatal(err)
	}
	_, dom, _, err := l.lookup(clone.Owner.UID)
	if err != nil {
		t.Fatal(err)
	}
	x, err := c.DomainGetXMLDesc(dom, 0)
	if err != nil {
		t.Fatal(err)
	}
	var live libvirtxml.Domain
	if err := live.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	srcXML, err := c.DomainGetXMLDesc(mustLookup(t, l, src.Owner.UID), 0)
	if err != nil {
		t.Fatal(err)
	}
	var srcLive libvirtxml.Domain
	if err := srcLive.Unmarshal(srcXML); err != nil {
		t.Fatal(err)
	}
	genid := ""
	if live.GenID != nil {
		genid = live.GenID.Value
	}
	if genid == "" || srcLive.GenID == nil || genid == srcLive.GenID.Value || live.Devices.Interfaces[0].MAC.Address != clone.NICs[0].MAC ||
		live.Devices.Disks[0].Source.File.File != clone.Disks[0].Path {
		t.Errorf("clone domain: genid %+v, MAC %+v, disk %+v", live.GenID, live.Devices.Interfaces[0].MAC, live.Devices.Disks[0].Source.File)
	}

	idCtx, idCancel := context.WithTimeout(ctx, 30*time.Second)
	defer idCancel()
	ack, err := l.SendIdentity(idCtx, clone.Owner.UID, GuestIdentity{
		InstanceID: clone.Owner.UID, Hostname: "clone", MACs: []string{clone.NICs[0].MAC}, Seed: []byte{1, 2, 3},
	})
	if err != nil || !ack {
		t.Fatalf("identity: acknowledged %v, %v", ack, err)
	}
	waitConsole(t, clone.ConsoleLog, regexp.MustCompile(`VESSEL-CLONE instance-id=`+clone.Owner.UID+` hostname=clone`))
	if x, err := c.DomainGetXMLDesc(dom, 0); err != nil || strings.Contains(x, IdentityPortName) {
		t.Errorf("the identity port is still plugged in (%v)", err)
	}
}

// cloneTestConfig is a domain of the test guest with a blank scratch disk,
// a seed whose user data counts on the console, and one NIC.
// runningSource connects to the tests' libvirtd and starts the "source"
// guest of cloneTestConfig there (removed when t ends).
func runningSource(ctx context.Context, t *testing.T) (l *Libvirt, socket, guest, dir string, src *DomainConfig) {
	t.Helper()
	host := needs.Libvirt(t)
	guest = needs.Guest(t)
	needs.Tool(t, "qemu-img")
	needs.Tool(t, "genisoimage")
	l = NewLibvirt(host.Socket())
	go l.Run(ctx)
	if err := l.WaitConnected(ctx); err != nil {
		t.Fatalf("connect to libvirtd: %v", err)
	}
	dir = t.TempDir()
	src = cloneTestConfig(t, dir, guest, "source")
	if err := l.Define(ctx, src); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = l.Destroy(context.Background(), src.Owner.UID)
		_ = l.Undefine(context.Background(), src.Owner.UID)
	})
	if err := l.Start(ctx, src.Owner.UID, false); err != nil {
		t.Fatal(err)
	}
	return l, host.Socket(), guest, dir, src
}

func cloneTestConfig(t *testing.T, dir, guest, name string) *DomainConfig {
	t.Helper()
	uid := uuid.NewString()
	vmDir := filepath.Join(dir, name)
	if err := os.MkdirAll(vmDir, 0o700); err != nil {
		t.Fatal(err)
	}
	scratch := filepath.Join(vmDir, "disk-scratch.qcow2")
	if name == "source" {
		mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", scratch, "64M")
	}
	seedDir := filepath.Join(vmDir, "seed")
	if err := os.MkdirAll(seedDir, 0o700); err != nil {
		t.Fatal(err)
	}
	userData := "#!/bin/sh\n( i=0; while :; do i=$((i+1)); echo \"TICK $i\"; sleep 1; done ) >/dev/console 2>&1 &\n"
	if err := os.WriteFile(filepath.Join(seedDir, "user-data"), []byte(userData), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(seedDir, "meta-data"), []byte("instance-id: "+uid+"\nlocal-hostname: "+name+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(vmDir, "seed-seed.iso")
	mustRun(t, "genisoimage", "-quiet", "-output", seed, "-volid", "cidata", "-joliet", "-rock",
		filepath.Join(seedDir, "user-data"), filepath.Join(seedDir, "meta-data"))
	return &DomainConfig{
		Owner:      Owner{Namespace: "vessel-test", Name: name, UID: uid, Hypervisor: "clone-test"},
		SpecHash:   "same-spec",
		CPUs:       1,
		MemoryKiB:  128 * 1024,
		Kernel:     filepath.Join(guest, "vmlinuz"),
		Initrd:     filepath.Join(guest, "initrd.img"),
		Cmdline:    "console=ttyS0 quiet",
		ConsoleLog: filepath.Join(vmDir, "console.log"),
		Disks: []DiskConfig{
			{Name: "scratch", Path: scratch, Format: "qcow2"},
			{Name: "seed", Path: seed, Format: "raw", CDROM: true},
		},
		NICs: []NICConfig{{Name: "default", MAC: "52:54:00:" + uid[0:2] + ":" + uid[2:4] + ":" + uid[4:6]}},
	}
}

func mustLookup(t *testing.T, l *Libvirt, uid string) golibvirt.Domain {
	t.Helper()
	_, dom, _, err := l.lookup(uid)
	if err != nil {
		t.Fatal(err)
	}
	return dom
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func waitConsole(t *testing.T, path string, re *regexp.Regexp) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
		b, _ := os.ReadFile(path)
		return re.Match(b), nil
	})
	if err != nil {
		b, _ := os.ReadFile(path)
		t.Fatalf("console %s never matched %s:\n%s", path, re, b)
	}
}

func lastTickIn(t *testing.T, path string) int {
	t.Helper()
	b, _ := os.ReadFile(path)
	m := regexp.MustCompile(`TICK (\d+)\r?\n`).FindAllStringSubmatch(string(b), -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}
