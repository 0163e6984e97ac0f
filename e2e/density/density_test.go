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

// Package density tests the control plane with simulated hypervisors
// (node-agent/hypervisor/sim): a real etcd, kube-apiserver and aggregated
// vessel-apiserver started by the launcher, and node agents running in this
// process, each a real API client with its own agent identity (client
// certificate), heartbeats and informers, over in-memory domains. It is the
// small, fault-testing sibling of `make bench-density`.
//
//	VESSEL_E2E=1 go test ./e2e/density/ -v
//
// Without the binaries in _output/bin the tests skip, unless VESSEL_E2E is
// set.
package density

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	"github.com/vessel-vm/vessel/launcher"
	"github.com/vessel-vm/vessel/launcher/pki"
	"github.com/vessel-vm/vessel/node-agent/agent"
	"github.com/vessel-vm/vessel/node-agent/hypervisor/sim"
)

// controlPlane starts a control plane without hypervisors, or skips.
func controlPlane(t *testing.T) *launcher.Cluster {
	t.Helper()
	bin, err := launcher.DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	var missing []error
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "vessel-apiserver"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			missing = append(missing, err)
		}
	}
	if len(missing) > 0 {
		if os.Getenv("VESSEL_E2E") == "" {
			t.Skipf("no control plane to test (%v); run `make deps build`, or set VESSEL_E2E=1 to fail instead", errors.Join(missing...))
		}
		t.Fatalf("VESSEL_E2E is set but the control plane cannot start: %v", errors.Join(missing...))
	}
	stateDir, err := os.MkdirTemp("", "vessel-e2e-density-")
	if err != nil {
		t.Fatal(err)
	}
	logf := func(string, ...any) {}
	if testing.Verbose() {
		logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c, err := launcher.Start(ctx, launcher.Options{StateDir: stateDir, NoAgent: true, Logf: logf})
	if err != nil {
		t.Fatalf("start the control plane (state in %s): %v", stateDir, err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("control plane state and logs kept in %s", stateDir)
		} else {
			os.RemoveAll(stateDir)
		}
	})
	return c
}

// simAgent is one simulated hypervisor's agent, running in this process.
type simAgent struct {
	name string
	hv   *sim.Hypervisor
	stop context.CancelFunc
	done chan error
}

// startSimAgent runs an agent for a simulated hypervisor named name, with
// its own client certificate (user system:vessel-agent:<name> in
// system:vessel-agents), as the launcher gives a real agent.
func startSimAgent(t *testing.T, c *launcher.Cluster, name string) *simAgent {
	t.Helper()
	cert, err := c.PKI.EnsureClientCert("agent-"+name, pki.AgentUserPrefix+name, []string{"system:vessel-agents"})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(c.StateDir, name+".kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig, pki.AgentUserPrefix+name, cert); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hv := sim.New(sim.Latencies{Call: time.Millisecond, Boot: 20 * time.Millisecond, GuestShutdown: 200 * time.Millisecond})
	a, err := agent.New(agent.Config{
		Client:            client,
		Hypervisor:        hv,
		HypervisorName:    name,
		StateDir:          t.TempDir(),
		Capacity:          v1alpha1.HypervisorResources{CPUs: 16, Memory: resource.MustParse("64Gi")},
		MaxVMs:            100,
		HeartbeatInterval: 2 * time.Second,
		Simulated:         true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &simAgent{name: name, hv: hv, stop: stop, done: make(chan error, 1)}
	go func() { s.done <- a.Run(ctx) }()
	t.Cleanup(func() { s.halt(t) })
	return s
}

// halt stops the agent, as a host whose agent died: no more heartbeats.
func (s *simAgent) halt(t *testing.T) {
	s.stop()
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("agent of %s: %v", s.name, err)
		}
		s.done <- nil // halted: later calls return at once
	case <-time.After(30 * time.Second):
		t.Errorf("agent of %s did not stop within 30s", s.name)
	}
	s.hv.Close()
}

func vm(name string) *v1alpha1.VirtualMachine {
	return &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.VirtualMachineSpec{
			RunStrategy: v1alpha1.RunStrategyAlways,
			CPUs:        1,
			Memory:      resource.MustParse("128Mi"),
			Disks:       []v1alpha1.Disk{{Name: "root", Blank: &v1alpha1.BlankSource{Size: resource.MustParse("1Gi")}}},
		},
	}
}

// waitFor polls until ok holds, failing with what last said otherwise.
func waitFor(t *testing.T, timeout time.Duration, what string, ok func(ctx context.Context) (bool, string)) {
	t.Helper()
	last := ""
	err := wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		done, state := ok(ctx)
		last = state
		return done, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %v; last: %s", what, timeout, last)
	}
}

// A simulated hypervisor whose agent stops heartbeating is marked not
// Ready, the VMs bound to it say so, and VMs created afterwards go to the
// other hypervisors, while creates keep succeeding.
func TestSilentHypervisorIsAvoided(t *testing.T) {
	c := controlPlane(t)
	admin, err := c.AdminConfig()
	if err != nil {
		t.Fatal(err)
	}
	client := versioned.NewForConfigOrDie(admin)
	core := kubernetes.NewForConfigOrDie(admin)
	ctx := t.Context()

	prefix := "sim-" + rand.String(5) + "-"
	agents := map[string]*simAgent{}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		agents[name] = startSimAgent(t, c, name)
	}
	waitFor(t, time.Minute, "3 simulated hypervisors Ready", func(ctx context.Context) (bool, string) {
		ready := 0
		for name := range agents {
			hv, err := client.VesselV1alpha1().Hypervisors().Get(ctx, name, metav1.GetOptions{})
			if err == nil && meta.IsStatusConditionTrue(hv.Status.Conditions, v1alpha1.HypervisorConditionReady) {
				ready++
			}
		}
		return ready == 3, fmt.Sprintf("%d Ready", ready)
	})

	ns, err := core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "density-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vms := client.VesselV1alpha1().VirtualMachines(ns.Name)
	create := func(names ...string) {
		t.Helper()
		for _, n := range names {
			if _, err := vms.Create(ctx, vm(n), metav1.CreateOptions{}); err != nil {
				t.Fatalf("create VM %s: %v", n, err)
			}
		}
	}
	// running waits until the named VMs run and returns where.
	running := func(names ...string) map[string]string {
		t.Helper()
		nodes := map[string]string{}
		waitFor(t, 2*time.Minute, fmt.Sprintf("%d VMs Running", len(names)), func(ctx context.Context) (bool, string) {
			for _, n := range names {
				v, err := vms.Get(ctx, n, metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				if v.Status.Phase != v1alpha1.VirtualMachineRunning {
					return false, fmt.Sprintf("%s is %q on %q", n, v.Status.Phase, v.Spec.NodeName)
				}
				nodes[n] = v.Spec.NodeName
			}
			return true, ""
		})
		return nodes
	}

	first := []string{"a-1", "a-2", "a-3", "a-4", "a-5", "a-6"}
	create(first...)
	nodes := running(first...)
	// A simulated hypervisor has no guest to show: the console says so.
	body, err := client.VesselV1alpha1().RESTClient().Get().Namespace(ns.Name).Resource("virtualmachines").
		Name("a-2").SubResource("console").DoRaw(ctx)
	if err == nil || !strings.Contains(string(body), "is simulated") {
		t.Errorf("console of a VM on a simulated hypervisor: %v: %s; want an error saying the hypervisor is simulated", err, body)
	}
	victim := nodes["a-1"]
	var onVictim []string
	for n, node := range nodes {
		if node == victim {
			onVictim = append(onVictim, n)
		}
	}
	t.Logf("placed %v; stopping the agent of %s (%d VMs)", nodes, victim, len(onVictim))
	agents[victim].halt(t)

	// Creates go on while the hypervisor falls silent.
	var (
		wg     sync.WaitGroup
		during []string
	)
	loadCtx, stopLoad := context.WithCancel(ctx)
	wg.Go(func() {
		for i := 0; loadCtx.Err() == nil; i++ {
			n := fmt.Sprintf("b-%d", i)
			if _, err := vms.Create(loadCtx, vm(n), metav1.CreateOptions{}); err != nil {
				if loadCtx.Err() == nil {
					t.Errorf("create VM %s while %s falls silent: %v", n, victim, err)
				}
				return
			}
			during = append(during, n)
			select {
			case <-loadCtx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	})

	waitFor(t, 90*time.Second, victim+" not Ready", func(ctx context.Context) (bool, string) {
		hv, err := client.VesselV1alpha1().Hypervisors().Get(ctx, victim, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		cond := meta.FindStatusCondition(hv.Status.Conditions, v1alpha1.HypervisorConditionReady)
		return cond != nil && cond.Status == metav1.ConditionUnknown && cond.Reason == "HeartbeatMissed", fmt.Sprintf("%+v", cond)
	})
	stopLoad()
	wg.Wait()
	waitFor(t, 30*time.Second, "the VMs of "+victim+" report it", func(ctx context.Context) (bool, string) {
		for _, n := range onVictim {
			v, err := vms.Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			cond := meta.FindStatusCondition(v.Status.Conditions, v1alpha1.VirtualMachineConditionReady)
			if cond == nil || cond.Status != metav1.ConditionUnknown || cond.Reason != v1alpha1.VirtualMachineReasonHypervisorNotReady {
				return false, fmt.Sprintf("%s: Ready condition %+v", n, cond)
			}
		}
		return true, ""
	})

	after := []string{"c-1", "c-2", "c-3", "c-4", "c-5", "c-6"}
	create(after...)
	for n, node := range running(after...) {
		if node == victim {
			t.Errorf("VM %s created after %s went silent was bound to it", n, victim)
		}
	}
	// Every acknowledged create is there.
	list, err := vms.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(first) + len(during) + len(after); len(list.Items) != want {
		t.Errorf("%d VMs listed, want the %d created", len(list.Items), want)
	}
}
