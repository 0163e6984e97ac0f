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

package network

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// testNetns makes a network namespace of the test's own (never the
// host's), or skips where that is impossible.
func testNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	for _, bin := range []string{"ip", "nft", "dnsmasq", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (hack/install-libvirt.sh)", bin)
		}
	}
	name := fmt.Sprintf("vessel-nettest-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	return NetnsPath(name)
}

func nftList(t *testing.T, m *Manager) string {
	t.Helper()
	out, err := m.run(context.Background(), nil, "nft", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestManagerInNamespace sets the network up for real in a namespace of
// its own: applying twice (an agent restart) changes nothing, dnsmasq is
// re-adopted, releasing the last port removes everything.
func TestManagerInNamespace(t *testing.T) {
	path := testNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	m, err := New(Config{Netns: path, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Release(context.Background(), "ua"); m.Release(context.Background(), "ub") })
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := m.Attach(ctx, "team-a", PortKey("ua", "default"), "52:54:00:aa:00:01")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Attach(ctx, "team-b", PortKey("ub", "default"), "52:54:00:bb:00:01"); err != nil {
		t.Fatal(err)
	}
	if a.Bridge != "vb0" || a.IP.String() != "10.200.0.2" {
		t.Fatalf("attachment %+v", a)
	}
	first := nftList(t, m)
	if !strings.Contains(first, "52:54:00:aa:00:01") || !strings.Contains(first, "masquerade") {
		t.Fatalf("ruleset in the namespace:\n%s", first)
	}
	pid := m.dnsmasqPID(m.state.Networks["team-a"])
	if pid == 0 {
		t.Fatal("no dnsmasq for team-a")
	}

	// An agent restart: a new manager from the same directory.
	m2, err := New(Config{Netns: path, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if again, err := m2.Attach(ctx, "team-a", PortKey("ua", "default"), "52:54:00:aa:00:01"); err != nil || again != a {
		t.Fatalf("after restart: %+v, %v; want %+v", again, err, a)
	}
	if second := nftList(t, m2); second != first {
		t.Fatalf("ruleset changed on restart:\nbefore:\n%s\nafter:\n%s", first, second)
	}
	if got := m2.dnsmasqPID(m2.state.Networks["team-a"]); got != pid {
		t.Fatalf("dnsmasq %d not re-adopted (now %d)", pid, got)
	}

	for _, uid := range []string{"ua", "ub"} {
		if err := m2.Release(ctx, uid); err != nil {
			t.Fatal(err)
		}
	}
	if left := nftList(t, m2); strings.Contains(left, "vessel") {
		t.Fatalf("tables left after the last port went:\n%s", left)
	}
	if out, _ := m2.run(ctx, nil, "ip", "-o", "link", "show", "type", "bridge"); strings.Contains(out, "vb0") {
		t.Fatalf("bridge left: %s", out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq %d still runs", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
