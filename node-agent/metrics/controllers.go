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

package metrics

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"

	"github.com/vessel-vm/vessel/node-agent/controller/worker"
)

// controllerMetrics are the agent's controllers' reconcile and work queue
// metrics. The queues are built inside each controller and client-go
// takes their metrics provider once per process, so these are
// process-wide: every registry of this process shares them.
type controllerMetrics struct {
	reconcileDuration *prometheus.HistogramVec
	reconcileErrors   *prometheus.CounterVec

	depth          *prometheus.GaugeVec
	adds           *prometheus.CounterVec
	queueLatency   *prometheus.HistogramVec
	workDuration   *prometheus.HistogramVec
	unfinished     *prometheus.GaugeVec
	longestRunning *prometheus.GaugeVec
	retries        *prometheus.CounterVec
}

var (
	installOnce sync.Once
	controllers *controllerMetrics
)

// latencyBuckets span a libvirt call (milliseconds) to an image import
// or a slow ACPI shutdown pass (a minute).
var latencyBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// processControllerMetrics returns the process's controller metrics,
// installing them as client-go's work queue provider and the worker
// package's sync observer on first use. It must run before the
// controllers build their queues for the queue metrics to be recorded.
func processControllerMetrics() *controllerMetrics {
	installOnce.Do(func() {
		controllers = newControllerMetrics()
		workqueue.SetProvider(controllers)
		worker.SetSyncObserver(controllers)
	})
	return controllers
}

func newControllerMetrics() *controllerMetrics {
	queue := []string{"queue"}
	return &controllerMetrics{
		reconcileDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vessel_agent_reconcile_duration_seconds",
			Help:    "How long one sync of a controller's key took (observe, decide, act, report), by outcome.",
			Buckets: latencyBuckets,
		}, []string{"controller", "result"}),
		reconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vessel_agent_reconcile_errors_total",
			Help: "Syncs of a controller's key that failed and will be retried with backoff.",
		}, []string{"controller"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vessel_agent_workqueue_depth",
			Help: "Keys waiting in a controller's work queue (queue: vms, snapshots, restores, nodestatus).",
		}, queue),
		adds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vessel_agent_workqueue_adds_total",
			Help: "Keys added to a controller's work queue.",
		}, queue),
		queueLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vessel_agent_workqueue_queue_duration_seconds",
			Help:    "How long a key waited in a work queue before a worker took it.",
			Buckets: latencyBuckets,
		}, queue),
		workDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vessel_agent_workqueue_work_duration_seconds",
			Help:    "How long a worker held a key.",
			Buckets: latencyBuckets,
		}, queue),
		unfinished: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vessel_agent_workqueue_unfinished_work_seconds",
			Help: "Seconds of work in progress not yet observed by work_duration; a large value means a stuck sync.",
		}, queue),
		longestRunning: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vessel_agent_workqueue_longest_running_processor_seconds",
			Help: "How long the longest running sync of a work queue has been running.",
		}, queue),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vessel_agent_workqueue_retries_total",
			Help: "Keys put back into a work queue with backoff.",
		}, queue),
	}
}

func (m *controllerMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.reconcileDuration, m.reconcileErrors, m.depth, m.adds,
		m.queueLatency, m.workDuration, m.unfinished, m.longestRunning, m.retries}
}

// ObserveSync implements worker.SyncObserver.
func (m *controllerMetrics) ObserveSync(queue string, took time.Duration, err error) {
	result := "success"
	if err != nil {
		result = "error"
		m.reconcileErrors.WithLabelValues(controllerName(queue)).Inc()
	}
	m.reconcileDuration.WithLabelValues(controllerName(queue), result).Observe(took.Seconds())
}

// controllerName is a queue's name without the agent's prefix:
// "vessel-agent-vms" is the controller "vms".
func controllerName(queue string) string {
	return strings.TrimPrefix(queue, "vessel-agent-")
}

// The workqueue.MetricsProvider methods.

func (m *controllerMetrics) NewDepthMetric(name string) workqueue.GaugeMetric {
	return m.depth.WithLabelValues(controllerName(name))
}

func (m *controllerMetrics) NewAddsMetric(name string) workqueue.CounterMetric {
	return m.adds.WithLabelValues(controllerName(name))
}

func (m *controllerMetrics) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return m.queueLatency.WithLabelValues(controllerName(name))
}

func (m *controllerMetrics) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return m.workDuration.WithLabelValues(controllerName(name))
}

func (m *controllerMetrics) NewUnfinishedWorkSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return m.unfinished.WithLabelValues(controllerName(name))
}

func (m *controllerMetrics) NewLongestRunningProcessorSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return m.longestRunning.WithLabelValues(controllerName(name))
}

func (m *controllerMetrics) NewRetriesMetric(name string) workqueue.CounterMetric {
	return m.retries.WithLabelValues(controllerName(name))
}

var (
	_ workqueue.MetricsProvider = &controllerMetrics{}
	_ worker.SyncObserver       = &controllerMetrics{}
)
