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
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	"github.com/vessel-vm/vessel/launcher"
)

// clients are the admin's, through kube-apiserver: the path every user's
// request takes, aggregation hop included.
type clients struct {
	vessel versioned.Interface
	core   kubernetes.Interface
}

func adminClients(t *testing.T, c *launcher.Cluster) clients {
	t.Helper()
	cfg, err := c.AdminConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0
	vessel, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return clients{vessel: vessel, core: core}
}

// newNamespace creates a namespace of the test's own, deleted at its end.
func newNamespace(t *testing.T, cl clients) string {
	t.Helper()
	ns, err := cl.core.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-replicas-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		err := cl.core.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// heartbeatHypervisors registers Hypervisors named after ns and keeps
// them Ready, room for thousands of small VMs, as agents do, every second
// until the test ends; then deletes them. A heartbeat that fails (while
// a replica dies) is simply tried again.
func heartbeatHypervisors(t *testing.T, cl clients, ns string, n int) []string {
	t.Helper()
	var names []string
	for i := range n {
		name := fmt.Sprintf("%s-hv-%d", ns, i+1)
		_, err := cl.vessel.VesselV1alpha1().Hypervisors().Create(t.Context(), &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("register hypervisor %s: %v", name, err)
		}
		names = append(names, name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		for _, name := range names {
			_ = cl.vessel.VesselV1alpha1().Hypervisors().Delete(context.Background(), name, metav1.DeleteOptions{})
		}
	})
	beat := func(ctx context.Context, name string) error {
		hv, err := cl.vessel.VesselV1alpha1().Hypervisors().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		room := v1alpha1.HypervisorResources{CPUs: 100000, Memory: resource.MustParse("100Ti"), VMs: 100000}
		hv.Status.Capacity, hv.Status.Allocatable = room, room
		now := metav1.Now()
		hv.Status.LastHeartbeatTime = &now
		hv.Status.Conditions = []metav1.Condition{{
			Type: v1alpha1.HypervisorConditionReady, Status: metav1.ConditionTrue,
			Reason: "AgentReady", Message: "heartbeats from e2e/replicas", LastTransitionTime: now,
		}}
		_, err = cl.vessel.VesselV1alpha1().Hypervisors().UpdateStatus(ctx, hv, metav1.UpdateOptions{})
		return err
	}
	for _, name := range names {
		if err := beat(t.Context(), name); err != nil {
			t.Fatalf("first heartbeat of %s: %v", name, err)
		}
		wg.Go(func() {
			wait.UntilWithContext(ctx, func(ctx context.Context) { _ = beat(ctx, name) }, time.Second)
		})
	}
	return names
}

// smallVM asks for little, so that the scheduler binds it anywhere; no
// agent runs it.
func smallVM(namespace, name string) *v1alpha1.VirtualMachine {
	return &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: v1alpha1.VirtualMachineSpec{
			RunStrategy: v1alpha1.RunStrategyHalted,
			CPUs:        1,
			Memory:      resource.MustParse("128Mi"),
			Disks:       []v1alpha1.Disk{{Name: "scratch", Blank: &v1alpha1.BlankSource{Size: resource.MustParse("64Mi")}}},
		},
	}
}

// outcome is one create of the load: acknowledged (err nil) or not.
type outcome struct {
	name     string
	sent     time.Time
	answered time.Time
	err      error
}

// createLoad creates VMs in ns from workers goroutines, each one create
// at a time with a pause between them, until stop is called, which
// returns every create's outcome.
func createLoad(cl clients, ns string, workers int, pause time.Duration) (stop func() []outcome) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var outcomes []outcome
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				o := outcome{name: fmt.Sprintf("vm-%d-%d", w, i), sent: time.Now()}
				reqCtx, cancelReq := context.WithTimeout(context.Background(), 30*time.Second)
				_, o.err = cl.vessel.VesselV1alpha1().VirtualMachines(ns).Create(reqCtx, smallVM(ns, o.name), metav1.CreateOptions{})
				cancelReq()
				o.answered = time.Now()
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		})
	}
	return func() []outcome {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return outcomes
	}
}

// bindings watches the VMs of ns and records every change of a VM's
// binding from one hypervisor to another: there must be none.
type bindings struct {
	mu      sync.Mutex
	rebound []string
}

func watchBindings(t *testing.T, cl clients, ns string) *bindings {
	t.Helper()
	b := &bindings{}
	factory := informers.NewSharedInformerFactoryWithOptions(cl.vessel, 0, informers.WithNamespace(ns))
	informer := factory.Vessel().V1alpha1().VirtualMachines().Informer()
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			old, cur := oldObj.(*v1alpha1.VirtualMachine), newObj.(*v1alpha1.VirtualMachine)
			if old.Spec.NodeName != "" && cur.Spec.NodeName != old.Spec.NodeName {
				b.mu.Lock()
				b.rebound = append(b.rebound, fmt.Sprintf("%s: %s -> %q", cur.Name, old.Spec.NodeName, cur.Spec.NodeName))
				b.mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(t.Context().Done(), informer.HasSynced) {
		t.Fatal("the VM informer never synced")
	}
	return b
}

func (b *bindings) reboundVMs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.rebound...)
}

// account checks that every acknowledged create is there and, when bound,
// bound: it waits up to timeout for all of them to be bound, and returns
// them by name with their hypervisor. The creates that failed are reported
// by the caller.
func account(t *testing.T, cl clients, ns string, outcomes []outcome, timeout time.Duration) map[string]string {
	t.Helper()
	acked := map[string]bool{}
	for _, o := range outcomes {
		if o.err == nil {
			acked[o.name] = true
		}
	}
	var nodes map[string]string
	var missing, pending []string
	err := wait.PollUntilContextTimeout(t.Context(), time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := cl.vessel.VesselV1alpha1().VirtualMachines(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		nodes = map[string]string{}
		for _, vm := range list.Items {
			nodes[vm.Name] = vm.Spec.NodeName
		}
		missing, pending = nil, nil
		for name := range acked {
			node, ok := nodes[name]
			switch {
			case !ok:
				missing = append(missing, name)
			case node == "":
				pending = append(pending, name)
			}
		}
		// A lost write never comes back: no need to wait for it.
		return len(missing) > 0 || len(pending) == 0, nil
	})
	if len(missing) > 0 {
		t.Errorf("%d of %d acknowledged creates are lost: %v", len(missing), len(acked), head(missing))
	}
	if err != nil || len(pending) > 0 {
		t.Errorf("%d of %d acknowledged VMs still pending after %v: %v", len(pending), len(acked), timeout, head(pending))
	}
	return nodes
}

// failures are the creates that were not acknowledged.
func failures(outcomes []outcome) []outcome {
	var failed []outcome
	for _, o := range outcomes {
		if o.err != nil {
			failed = append(failed, o)
		}
	}
	return failed
}

func head[T any](s []T) []T {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}
