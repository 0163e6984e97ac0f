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
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// Registry is what one agent exposes: Handler serves it all (the
// Prometheus endpoint), ResourceHandler the per-VM usage the
// vessel-apiserver reads. The agent adds the parts that need its informers
// once it has them (AddVMs, AddImageCache); until then the VM series are
// simply absent.
type Registry struct {
	all *prometheus.Registry
	// labelled registers in all with the hypervisor label.
	labelled prometheus.Registerer
	resource *prometheus.Registry
}

// Options are the parts of the agent known before it runs.
type Options struct {
	// Hypervisor is the Hypervisor object's name, a label of every series.
	Hypervisor string
	// Version is the agent's version (vessel_agent_build_info).
	Version string
	// ConsoleSessions counts the attached console sessions; nil when the
	// agent serves no console.
	ConsoleSessions func() int
}

// NewRegistry returns a registry with the agent's process, Go runtime,
// controller and build metrics. It installs the controller metrics as
// client-go's work queue metrics provider, so it must be built before the
// controllers.
func NewRegistry(opts Options) *Registry {
	constLabels := prometheus.Labels{"hypervisor": opts.Hypervisor}
	all := prometheus.NewRegistry()
	wrapped := prometheus.WrapRegistererWith(constLabels, all)
	all.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
	)
	wrapped.MustRegister(processControllerMetrics().collectors()...)
	wrapped.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "vessel_agent_build_info",
		Help:        "Always 1; the version label is the agent's version.",
		ConstLabels: prometheus.Labels{"version": opts.Version},
	}, func() float64 { return 1 }))
	if opts.ConsoleSessions != nil {
		wrapped.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vessel_agent_console_sessions",
			Help: "Console sessions attached to this agent's guests now.",
		}, func() float64 { return float64(opts.ConsoleSessions()) }))
	}
	return &Registry{
		all:      all,
		labelled: wrapped,
		resource: prometheus.NewRegistry(),
	}
}

// AddVMs adds the per-VM metrics of the VMs vms lists (bound to this
// node), read from stats, to both endpoints.
func (r *Registry) AddVMs(stats hypervisor.StatsReader, vms listers.VirtualMachineLister) error {
	if err := r.labelled.Register(NewVMCollector(stats, vms)); err != nil {
		return fmt.Errorf("register VM metrics: %w", err)
	}
	if err := r.resource.Register(newResourceCollector(stats, vms)); err != nil {
		return fmt.Errorf("register VM resource metrics: %w", err)
	}
	return nil
}

// AddImageCache adds the image cache's size.
func (r *Registry) AddImageCache(usage func() (bytes int64, images int, err error)) error {
	if err := r.labelled.Register(&imageCacheCollector{usage: usage}); err != nil {
		return fmt.Errorf("register image cache metrics: %w", err)
	}
	return nil
}

// Gatherer is everything the Prometheus endpoint serves.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.all }

// Handler serves every metric in Prometheus' text (or, when asked, protobuf
// or OpenMetrics) format. A collector's error fails only its own series.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.all, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
		Registry:          r.all,
	})
}

// ResourceHandler serves the per-VM CPU and memory the vessel-apiserver's
// usage API is fed from, in Prometheus' text format with the time each
// value was read (see ResourceCPUMetric).
func (r *Registry) ResourceHandler() http.Handler {
	return promhttp.HandlerFor(r.resource, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
}

// imageCacheCollector reads the image cache's size once per scrape.
type imageCacheCollector struct {
	usage func() (int64, int, error)
}

var (
	imageCacheBytes = prometheus.NewDesc("vessel_agent_image_cache_bytes",
		"Bytes of complete images in the agent's image cache.", nil, nil)
	imageCacheImages = prometheus.NewDesc("vessel_agent_image_cache_images",
		"Complete images in the agent's image cache.", nil, nil)
)

func (c *imageCacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- imageCacheBytes
	ch <- imageCacheImages
}

func (c *imageCacheCollector) Collect(ch chan<- prometheus.Metric) {
	bytes, images, err := c.usage()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(imageCacheBytes, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(imageCacheBytes, prometheus.GaugeValue, float64(bytes))
	ch <- prometheus.MustNewConstMetric(imageCacheImages, prometheus.GaugeValue, float64(images))
}
