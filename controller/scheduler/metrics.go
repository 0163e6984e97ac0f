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

package scheduler

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Scheduling results, the label of the attempt metrics.
const (
	resultBound         = "bound"
	resultUnschedulable = "unschedulable"
	resultError         = "error"
)

// The scheduler's metrics, served on the vessel-apiserver's /metrics. They
// are process-wide: one scheduler runs at a time (the controller lease).
var (
	queueDepth = metrics.NewGauge(&metrics.GaugeOpts{
		Name:           "vessel_scheduler_queue_depth",
		Help:           "VMs waiting in the scheduler's queue (pending VMs not being placed right now, backoff excluded).",
		StabilityLevel: metrics.ALPHA,
	})
	attempts = metrics.NewCounterVec(&metrics.CounterOpts{
		Name:           "vessel_scheduler_attempts_total",
		Help:           "Scheduling attempts, by result (bound, unschedulable, error).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
	attemptDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Name:           "vessel_scheduler_attempt_duration_seconds",
		Help:           "How long one scheduling attempt took (placement and, when a hypervisor fits, the binding write), by result.",
		Buckets:        []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
	pendingDuration = metrics.NewHistogram(&metrics.HistogramOpts{
		Name:           "vessel_scheduler_scheduling_duration_seconds",
		Help:           "From a VM's creation (metadata.creationTimestamp, whole seconds) to its binding.",
		Buckets:        []float64{0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800},
		StabilityLevel: metrics.ALPHA,
	})
	bindingErrors = metrics.NewCounter(&metrics.CounterOpts{
		Name:           "vessel_scheduler_binding_errors_total",
		Help:           "Binding writes that failed (conflicts with a binding or deletion made meanwhile excluded); the VM is retried.",
		StabilityLevel: metrics.ALPHA,
	})
	unschedulableVMs = metrics.NewGauge(&metrics.GaugeOpts{
		Name:           "vessel_scheduler_unschedulable_vms",
		Help:           "Pending VMs that fit on no hypervisor at their last attempt.",
		StabilityLevel: metrics.ALPHA,
	})
	registerMetrics sync.Once
)

// register adds the metrics to the process's legacy registry, which the
// apiserver serves, once.
func register() {
	registerMetrics.Do(func() {
		legacyregistry.MustRegister(queueDepth, attempts, attemptDuration, pendingDuration, bindingErrors, unschedulableVMs)
	})
}
