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
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
)

// milestones records when the benchmark first saw each step of a VM's way
// from create to running (VM created, bound, clone handed to the agent,
// clone done, phase Running), from watches on the namespace's VMs and
// clones, so a slow kind of create can be told where it waits.
type milestones struct {
	mu   sync.Mutex
	seen map[string]time.Time // "<name> <step>" -> first seen
	stop context.CancelFunc
}

func watchMilestones(client versioned.Interface, ns string) (*milestones, error) {
	ctx, cancel := context.WithCancel(context.Background())
	m := &milestones{seen: map[string]time.Time{}, stop: cancel}
	v := client.VesselV1alpha1()
	vmw, err := v.VirtualMachines(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		return nil, err
	}
	clw, err := v.VirtualMachineClones(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		vmw.Stop()
		return nil, err
	}
	go m.run(ctx, vmw, clw)
	return m, nil
}

func (m *milestones) run(ctx context.Context, vmw, clw watch.Interface) {
	defer vmw.Stop()
	defer clw.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-vmw.ResultChan():
			if !ok {
				return
			}
			if vm, ok := ev.Object.(*v1alpha1.VirtualMachine); ok {
				m.mark(vm.Name, "vm-created")
				if vm.Spec.NodeName != "" {
					m.mark(vm.Name, "vm-bound")
				}
				if vm.Status.Phase != "" {
					m.mark(vm.Name, "vm-"+string(vm.Status.Phase))
				}
			}
		case ev, ok := <-clw.ResultChan():
			if !ok {
				return
			}
			if cl, ok := ev.Object.(*v1alpha1.VirtualMachineClone); ok && cl.Status.Phase != "" {
				m.mark(cl.Name, "clone-"+string(cl.Status.Phase))
			}
		}
	}
}

func (m *milestones) mark(name, step string) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.seen[name+" "+step]; !ok {
		m.seen[name+" "+step] = now
	}
}

// report says when each step of name was first seen, after start.
func (m *milestones) report(name string, start time.Time) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	type step struct {
		name string
		at   time.Duration
	}
	var steps []step
	for k, t := range m.seen {
		if n, s, _ := strings.Cut(k, " "); n == name {
			steps = append(steps, step{s, t.Sub(start)})
		}
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].at < steps[j].at })
	var b strings.Builder
	for _, s := range steps {
		fmt.Fprintf(&b, " %s %.2fs", s.name, s.at.Seconds())
	}
	return strings.TrimSpace(b.String())
}
