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

package replicas

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/leaderelection"

	"github.com/vessel-vm/vessel/apiserver"
	"github.com/vessel-vm/vessel/launcher"
)

// TestKillControllerReplica kills the vessel-apiserver that runs the
// controllers while VMs are being created: the other replica takes the
// Lease within its duration, serves the creates, and binds every VM,
// those created while no replica ran the scheduler included, each once.
func TestKillControllerReplica(t *testing.T) {
	c := controlPlane(t)
	cl := adminClients(t, c)
	ns := newNamespace(t, cl)
	hypervisors := heartbeatHypervisors(t, cl, ns, 2)
	bound := watchBindings(t, cl, ns)

	holder, holderPID := leaseHolder(t, cl, "")
	killed, survivor := replicaOf(t, c, holderPID), ""
	for i := 1; i <= apiServers; i++ {
		if name := launcher.VesselAPIServerComponent(i); name != killed {
			survivor = name
		}
	}
	survivorPID, err := c.PID(survivor)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s (pid %d) holds the controllers' Lease as %s; %s (pid %d) stands by", killed, holderPID, holder, survivor, survivorPID)

	stop := createLoad(cl, ns, 4, 100*time.Millisecond)
	time.Sleep(3 * time.Second)
	if err := c.Kill(killed); err != nil {
		stop()
		t.Fatal(err)
	}
	killedAt := time.Now()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.Restart(ctx, killed); err != nil {
			t.Errorf("put %s back: %v", killed, err)
		}
	})

	newHolder, newPID := leaseHolder(t, cl, holder)
	handover := time.Since(killedAt)
	t.Logf("%s took the Lease as %s %v after the kill", survivor, newHolder, handover.Round(time.Millisecond))
	if newPID != survivorPID {
		t.Errorf("the Lease went to pid %d, not to the surviving replica's %d", newPID, survivorPID)
	}
	// The survivor counts the lease duration from when it saw the holder's
	// last renewal, and looks once every retry period plus up to
	// leaderelection.JitterFactor of it: it may see that renewal that long
	// after it was made, and the expiry as late after it happened.
	times := apiserver.DefaultControllersElection
	poll := time.Duration((1 + leaderelection.JitterFactor) * float64(times.RetryPeriod))
	if limit := times.LeaseDuration + 2*poll + time.Second; handover > limit {
		t.Errorf("the Lease changed hands %v after the kill, more than %v", handover.Round(time.Millisecond), limit)
	}
	time.Sleep(5 * time.Second)
	outcomes := stop()

	nodes := account(t, cl, ns, outcomes, 90*time.Second)
	for name, node := range nodes {
		if node != "" && !slices.Contains(hypervisors, node) {
			t.Errorf("VM %s is bound to %q, not to one of this test's hypervisors", name, node)
		}
	}
	if rebound := bound.reboundVMs(); len(rebound) > 0 {
		t.Errorf("%d VMs were bound twice: %v", len(rebound), head(rebound))
	}

	var leaderless, afterHandover int
	for _, o := range outcomes {
		switch {
		case o.err != nil:
		case o.sent.After(killedAt.Add(handover)):
			afterHandover++
		case o.answered.After(killedAt):
			leaderless++
		}
	}
	t.Logf("%d creates: %d acknowledged while no replica ran the controllers, %d after the handover, %d failed",
		len(outcomes), leaderless, afterHandover, len(failures(outcomes)))
	if leaderless == 0 || afterHandover == 0 {
		t.Errorf("the survivor acknowledged %d creates while the Lease was free and %d after it took it; want some of both", leaderless, afterHandover)
	}
	// Requests the dead replica had taken fail; once its endpoint says
	// not ready, kube-apiserver sends everything to the survivor.
	for _, o := range head(failures(outcomes)) {
		t.Logf("create %s sent %v after the kill failed: %v", o.name, o.sent.Sub(killedAt).Round(time.Millisecond), o.err)
		if o.sent.After(killedAt.Add(5 * time.Second)) {
			t.Errorf("create %s failed %v after the kill, when the survivor alone should serve: %v", o.name, o.sent.Sub(killedAt).Round(time.Millisecond), o.err)
		}
	}
}

// leaseHolder waits until someone other than not holds the controllers'
// Lease, and returns its identity and pid (identities are
// <host>_<pid>).
func leaseHolder(t *testing.T, cl clients, not string) (string, int) {
	t.Helper()
	var holder string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		lease, err := cl.core.CoordinationV1().Leases("vessel-system").Get(ctx, "vessel-controllers", metav1.GetOptions{})
		if err != nil || lease.Spec.HolderIdentity == nil {
			return false, nil
		}
		holder = *lease.Spec.HolderIdentity
		return holder != "" && holder != not, nil
	})
	if err != nil {
		t.Fatalf("nobody took the controllers' Lease (last holder %q): %v", holder, err)
	}
	n, err := strconv.Atoi(holder[strings.LastIndex(holder, "_")+1:])
	if err != nil {
		t.Fatalf("Lease holder %q: no pid in it", holder)
	}
	return holder, n
}

// replicaOf names the vessel-apiserver of this control plane whose pid
// this is; a Lease held by anything else fails the test.
func replicaOf(t *testing.T, c *launcher.Cluster, pid int) string {
	t.Helper()
	for i := 1; i <= apiServers; i++ {
		name := launcher.VesselAPIServerComponent(i)
		if p, err := c.PID(name); err == nil && p == pid {
			return name
		}
	}
	t.Fatalf("pid %d holds the controllers' Lease, and is none of this control plane's vessel-apiservers", pid)
	return ""
}
