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

package usage

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vessel-vm/vessel/apis/metrics"
)

// Reading is what an agent reported for one VM at one time.
type Reading struct {
	UID       types.UID
	Namespace string
	Name      string
	Time      time.Time
	// CPUSeconds is cumulative since the guest's QEMU process started.
	CPUSeconds float64
	// MemoryBytes is resident host memory now.
	MemoryBytes float64
}

// series is the two latest readings of one VM, from the agent of node.
type series struct {
	node       string
	prev, last Reading
	hasPrev    bool
}

// Store keeps, in memory, the two latest readings of every VM the agents
// reported: CPU usage is the rate between them, as metrics-server computes
// a pod's from the kubelet's cumulative counters.
type Store struct {
	mu  sync.RWMutex
	vms map[types.UID]*series
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{vms: map[types.UID]*series{}}
}

// Update records what node's agent reported now: readings of the VMs it
// runs. A VM of node's no longer reported (stopped, deleted, moved) is
// forgotten.
func (s *Store) Update(node string, readings []Reading) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[types.UID]bool, len(readings))
	for _, r := range readings {
		seen[r.UID] = true
		cur := s.vms[r.UID]
		switch {
		case cur == nil || cur.node != node:
			s.vms[r.UID] = &series{node: node, last: r}
		case !r.Time.After(cur.last.Time):
			// The same reading again (or the agent's clock went back).
		case r.CPUSeconds < cur.last.CPUSeconds:
			// The guest restarted: its counter began again.
			*cur = series{node: node, last: r}
		default:
			cur.prev, cur.last, cur.hasPrev = cur.last, r, true
		}
	}
	for uid, cur := range s.vms {
		if cur.node == node && !seen[uid] {
			delete(s.vms, uid)
		}
	}
}

// Forget drops everything node's agent reported: it could not be read, so
// its VMs' usage is unknown rather than stale.
func (s *Store) Forget(node string) {
	s.Update(node, nil)
}

// Nodes are the hypervisors with VMs in the store.
func (s *Store) Nodes() map[string]bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string]bool{}
	for _, cur := range s.vms {
		out[cur.node] = true
	}
	return out
}

// VMUsage is the usage of the VM with uid, if the agent of node (the
// hypervisor the VM is bound to) reported it twice: an agent's word about
// another node's VM is never taken.
func (s *Store) VMUsage(uid types.UID, node string) (*metrics.VirtualMachineMetrics, bool) {
	s.mu.RLock()
	cur := s.vms[uid]
	var prev, last Reading
	ok := cur != nil && cur.hasPrev && cur.node == node && node != ""
	if ok {
		prev, last = cur.prev, cur.last
	}
	s.mu.RUnlock()
	if !ok {
		return nil, false
	}
	window := last.Time.Sub(prev.Time)
	cores := (last.CPUSeconds - prev.CPUSeconds) / window.Seconds()
	return &metrics.VirtualMachineMetrics{
		Timestamp: metav1.NewTime(last.Time),
		Window:    metav1.Duration{Duration: window},
		Usage: corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewMilliQuantity(int64(cores*1000+0.5), resource.DecimalSI),
			corev1.ResourceMemory: *resource.NewQuantity(int64(last.MemoryBytes), resource.BinarySI),
		},
	}, true
}
