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

package nodestatus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/nodestatus"
	"github.com/vessel-vm/vessel/node-agent/internal/agenttest"
)

func TestMain(m *testing.M) { agenttest.Main(m) }

// TestHypervisorNotReadyWhileLibvirtdIsUnreachable: the agent's libvirt
// socket goes through a proxy the test controls. Cut, the agent keeps
// heartbeating but its Hypervisor turns Ready=False saying libvirtd is
// unreachable (so the scheduler binds nothing to it); restored, it is
// Ready=True again.
func TestHypervisorNotReadyWhileLibvirtdIsUnreachable(t *testing.T) {
	proxy := agenttest.NewSocketProxy(t)
	e := agenttest.NewWith(t, agenttest.Options{Socket: proxy.Path, NoGuest: true})
	e.StartAgent()

	ready := waitReady(t, e, metav1.ConditionTrue, 30*time.Second)
	if ready.Reason != nodestatus.ReasonHeartbeat {
		t.Errorf("Ready condition with libvirtd reachable: %+v", ready)
	}

	proxy.Down()
	notReady := waitReady(t, e, metav1.ConditionFalse, 30*time.Second)
	if notReady.Reason != nodestatus.ReasonLibvirtdUnreachable || !strings.Contains(notReady.Message, "libvirtd is unreachable") {
		t.Errorf("Ready condition with libvirtd unreachable: %+v, want reason %s saying libvirtd is unreachable", notReady, nodestatus.ReasonLibvirtdUnreachable)
	}
	hv, err := e.Client.VesselV1alpha1().Hypervisors().Get(e.Ctx, e.HypervisorName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if beat := hv.Status.LastHeartbeatTime; beat == nil || time.Since(beat.Time) > 10*time.Second {
		t.Errorf("the agent stopped heartbeating while libvirtd was unreachable: last heartbeat %v", beat)
	}

	proxy.Up()
	if back := waitReady(t, e, metav1.ConditionTrue, 30*time.Second); back.Reason != nodestatus.ReasonHeartbeat {
		t.Errorf("Ready condition after libvirtd came back: %+v", back)
	}
}

// waitReady waits until the test's Hypervisor has Ready=status and returns
// the condition.
func waitReady(t *testing.T, e *agenttest.Env, status metav1.ConditionStatus, timeout time.Duration) metav1.Condition {
	t.Helper()
	var last *metav1.Condition
	start := time.Now()
	err := wait.PollUntilContextTimeout(e.Ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		hv, err := e.Client.VesselV1alpha1().Hypervisors().Get(ctx, e.HypervisorName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = meta.FindStatusCondition(hv.Status.Conditions, v1alpha1.HypervisorConditionReady)
		return last != nil && last.Status == status, nil
	})
	if err != nil {
		t.Fatalf("hypervisor %s: Ready=%s not reached within %s; last condition: %+v", e.HypervisorName, status, timeout, last)
	}
	t.Logf("hypervisor %s: Ready=%s (%s: %s) after %.1fs", e.HypervisorName, status, last.Reason, last.Message, time.Since(start).Seconds())
	return *last
}
