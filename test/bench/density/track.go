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

package main

import (
	"context"
	"fmt"
	"log"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
)

// vmTimes is what happened to one VM, as this process saw it.
type vmTimes struct {
	// created is when the create request was sent; acked when it returned.
	created, acked time.Time
	// added is when the watch delivered the VM; bound and running when it
	// first showed a node and phase Running.
	added, bound, running time.Time
	node                  string
}

// tracker watches the benchmark's namespace through kube-apiserver and
// records each VM's milestones.
type tracker struct {
	mu  sync.Mutex
	vms map[string]*vmTimes
	// nodes counts first bindings per hypervisor.
	nodes map[string]int
	// running counts VMs seen Running, for waiting.
	running int
}

func newTracker() *tracker {
	return &tracker{vms: map[string]*vmTimes{}, nodes: map[string]int{}}
}

func (t *tracker) get(name string) *vmTimes {
	v := t.vms[name]
	if v == nil {
		v = &vmTimes{}
		t.vms[name] = v
	}
	return v
}

// sent and ack record a create request.
func (t *tracker) sent(name string, at time.Time) {
	t.mu.Lock()
	t.get(name).created = at
	t.mu.Unlock()
}

func (t *tracker) ack(name string, at time.Time) {
	t.mu.Lock()
	t.get(name).acked = at
	t.mu.Unlock()
}

// observe records what one watch event shows.
func (t *tracker) observe(vm *v1alpha1.VirtualMachine, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.get(vm.Name)
	if v.added.IsZero() {
		v.added = at
	}
	if vm.Spec.NodeName != "" && v.bound.IsZero() {
		v.bound, v.node = at, vm.Spec.NodeName
		t.nodes[vm.Spec.NodeName]++
	}
	if vm.Status.Phase == v1alpha1.VirtualMachineRunning && v.running.IsZero() {
		v.running = at
		t.running++
	}
}

func (t *tracker) runningCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.running
}

// watch follows the namespace from resourceVersion rv until ctx ends,
// watching again from the last version seen when the server closes the
// stream.
func (t *tracker) watch(ctx context.Context, client versioned.Interface, namespace, rv string) error {
	vms := client.VesselV1alpha1().VirtualMachines(namespace)
	for ctx.Err() == nil {
		w, err := vms.Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Printf("watch VMs: %v; again in 1s", err)
			time.Sleep(time.Second)
			continue
		}
		for ev := range w.ResultChan() {
			now := time.Now()
			switch ev.Type {
			case watch.Added, watch.Modified:
				vm := ev.Object.(*v1alpha1.VirtualMachine)
				rv = vm.ResourceVersion
				t.observe(vm, now)
			case watch.Bookmark:
				if vm, ok := ev.Object.(*v1alpha1.VirtualMachine); ok {
					rv = vm.ResourceVersion
				}
			case watch.Error:
				w.Stop()
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watch VMs: %v", ev.Object)
			}
		}
	}
	return nil
}
