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
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func reading(uid string, at time.Duration, cpuSeconds, mem float64) Reading {
	return Reading{UID: types.UID(uid), Namespace: "team-a", Name: "vm-" + uid, Time: t0.Add(at), CPUSeconds: cpuSeconds, MemoryBytes: mem}
}

func TestStoreRateBetweenTwoReadings(t *testing.T) {
	s := NewStore()
	s.Update("hv-1", []Reading{reading("a", 0, 10, 100<<20)})
	if _, ok := s.VMUsage("a", "hv-1"); ok {
		t.Fatal("usage after one reading; want none until a rate can be computed")
	}
	s.Update("hv-1", []Reading{reading("a", 15*time.Second, 25, 120<<20)})
	m, ok := s.VMUsage("a", "hv-1")
	if !ok {
		t.Fatal("no usage after two readings")
	}
	cpu, mem := m.Usage[corev1.ResourceCPU], m.Usage[corev1.ResourceMemory]
	if cpu.MilliValue() != 1000 || mem.Value() != 120<<20 || m.Window.Duration != 15*time.Second || !m.Timestamp.Time.Equal(t0.Add(15*time.Second)) {
		t.Errorf("usage = cpu %s, memory %s, window %v, at %v; want 1 core, 120Mi, 15s, at the last reading", cpu.String(), mem.String(), m.Window.Duration, m.Timestamp)
	}
}

func TestStoreTrustsOnlyTheBoundNodesAgent(t *testing.T) {
	s := NewStore()
	for i, at := range []time.Duration{0, 10 * time.Second} {
		s.Update("hv-1", []Reading{reading("a", at, float64(i), 1)})
	}
	if _, ok := s.VMUsage("a", "hv-2"); ok {
		t.Error("hv-1's reading answered for a VM bound to hv-2")
	}
	if _, ok := s.VMUsage("a", ""); ok {
		t.Error("a reading answered for an unbound VM")
	}
}

func TestStoreForgetsWhatIsNoLongerReported(t *testing.T) {
	s := NewStore()
	for i, at := range []time.Duration{0, 10 * time.Second} {
		s.Update("hv-1", []Reading{reading("a", at, float64(i), 1), reading("b", at, float64(i), 1)})
		s.Update("hv-2", []Reading{reading("c", at, float64(i), 1)})
	}
	s.Update("hv-1", []Reading{reading("a", 20*time.Second, 2, 1)})
	if _, ok := s.VMUsage("b", "hv-1"); ok {
		t.Error("b is still known after its agent stopped reporting it (deleted or stopped)")
	}
	if _, ok := s.VMUsage("a", "hv-1"); !ok {
		t.Error("a was forgotten though reported")
	}
	s.Forget("hv-2")
	if _, ok := s.VMUsage("c", "hv-2"); ok {
		t.Error("c is still known after its agent could not be read")
	}
	if nodes := s.Nodes(); len(nodes) != 1 || !nodes["hv-1"] {
		t.Errorf("Nodes() = %v, want only hv-1", nodes)
	}
}

func TestStoreStartsOverWhenTheCounterResets(t *testing.T) {
	s := NewStore()
	s.Update("hv-1", []Reading{reading("a", 0, 100, 1)})
	s.Update("hv-1", []Reading{reading("a", 10*time.Second, 110, 1)})
	// The guest restarted: its QEMU process counts from zero again.
	s.Update("hv-1", []Reading{reading("a", 20*time.Second, 2, 1)})
	if m, ok := s.VMUsage("a", "hv-1"); ok {
		cpu := m.Usage[corev1.ResourceCPU]
		t.Errorf("usage %s right after a counter reset; want none until two new readings", cpu.String())
	}
	s.Update("hv-1", []Reading{reading("a", 30*time.Second, 7, 1)})
	m, ok := s.VMUsage("a", "hv-1")
	if cpu := m.Usage[corev1.ResourceCPU]; !ok || cpu.MilliValue() != 500 {
		t.Errorf("usage after the reset = %v, %v; want 500m", ok, cpu.String())
	}
}

func TestStoreIgnoresARepeatedReading(t *testing.T) {
	s := NewStore()
	s.Update("hv-1", []Reading{reading("a", 0, 1, 1)})
	s.Update("hv-1", []Reading{reading("a", 0, 1, 1)})
	if _, ok := s.VMUsage("a", "hv-1"); ok {
		t.Error("the same reading twice gave a rate (over a zero window)")
	}
}
