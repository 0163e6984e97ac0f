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

// Package usage feeds the metrics.vessel.dev API: every resolution it reads
// each Ready Hypervisor's agent for the CPU time and memory of the VMs it
// runs, over the mutual TLS the apiserver uses for consoles, and keeps the
// two latest readings per VM in memory (Store), metrics-server style. Each
// apiserver replica scrapes for itself and serves from its own memory:
// nothing is stored in etcd, and agents need no permission to write usage
// anywhere.
package usage

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

// The agents' resource endpoint (node-agent/metrics' ResourcePath and
// metric names; a test here holds both sides to it).
const (
	resourcePath   = "/metrics/resource"
	cpuMetric      = "vessel_vm_cpu_seconds_total"
	memoryMetric   = "vessel_vm_memory_rss_bytes"
	maxScrapeBytes = 8 << 20
	// parallelScrapes bounds the agents read at once.
	parallelScrapes = 16
)

// DefaultResolution is how often agents are read, as metrics-server's
// default --metric-resolution.
const DefaultResolution = 15 * time.Second

var (
	scrapes = metrics.NewCounterVec(&metrics.CounterOpts{
		Name:           "vessel_usage_agent_scrapes_total",
		Help:           "Reads of node agents' per-VM usage by this vessel-apiserver, by result (success, error).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
	scrapeDuration = metrics.NewHistogram(&metrics.HistogramOpts{
		Name:           "vessel_usage_agent_scrape_duration_seconds",
		Help:           "How long reading one node agent's per-VM usage took.",
		Buckets:        []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		StabilityLevel: metrics.ALPHA,
	})
	registerOnce sync.Once
)

// Transports gives the transport toward one hypervisor's agent: the
// apiserver's mutual TLS, accepting only a serving certificate issued for
// that hypervisor, so that an endpoint cannot report another node's VMs.
type Transports interface {
	ForHypervisor(name string) http.RoundTripper
}

// Scraper reads the agents into a Store.
type Scraper struct {
	hypervisors listers.HypervisorLister
	transports  Transports
	timeout     time.Duration
	store       *Store
	resolution  time.Duration
}

// New returns a scraper of the hypervisors the lister lists, reaching their
// agents with transports (the apiserver's mutual TLS toward agents).
func New(hypervisors listers.HypervisorLister, transports Transports, store *Store, resolution time.Duration) *Scraper {
	if resolution <= 0 {
		resolution = DefaultResolution
	}
	registerOnce.Do(func() { legacyregistry.MustRegister(scrapes, scrapeDuration) })
	return &Scraper{
		hypervisors: hypervisors,
		transports:  transports,
		timeout:     min(resolution, 10*time.Second),
		store:       store,
		resolution:  resolution,
	}
}

// Run reads every agent each resolution until ctx ends.
func (s *Scraper) Run(ctx context.Context) {
	wait.UntilWithContext(ctx, s.ScrapeOnce, s.resolution)
}

// ScrapeOnce reads every Ready hypervisor's agent once, in parallel. The
// VMs of a hypervisor that is not Ready, or whose agent could not be read,
// are forgotten.
func (s *Scraper) ScrapeOnce(ctx context.Context) {
	logger := klog.FromContext(ctx)
	hvs, err := s.hypervisors.List(labels.Everything())
	if err != nil {
		logger.Error(err, "Listing hypervisors for VM usage failed")
		return
	}
	scraped := map[string]bool{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallelScrapes)
	for _, hv := range hvs {
		if hv.Status.DaemonEndpoint == "" || !meta.IsStatusConditionTrue(hv.Status.Conditions, v1alpha1.HypervisorConditionReady) {
			continue
		}
		scraped[hv.Name] = true
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			start := time.Now()
			readings, err := s.read(ctx, hv.Name, hv.Status.DaemonEndpoint)
			scrapeDuration.Observe(time.Since(start).Seconds())
			if err != nil {
				scrapes.WithLabelValues("error").Inc()
				logger.V(2).Info("Reading VM usage from an agent failed", "hypervisor", hv.Name, "err", err)
				s.store.Forget(hv.Name)
				return
			}
			scrapes.WithLabelValues("success").Inc()
			s.store.Update(hv.Name, readings)
		})
	}
	wg.Wait()
	for node := range s.store.Nodes() {
		if !scraped[node] {
			s.store.Forget(node)
		}
	}
}

// read fetches and parses the resource endpoint of hypervisor's agent.
func (s *Scraper) read(ctx context.Context, hypervisor, endpoint string) ([]Reading, error) {
	u := url.URL{Scheme: "https", Host: endpoint, Path: resourcePath}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	client := &http.Client{Transport: s.transports.ForHypervisor(hypervisor), Timeout: s.timeout}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read usage from agent at %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read usage from agent at %s: HTTP %d", endpoint, resp.StatusCode)
	}
	readings, err := parse(io.LimitReader(resp.Body, maxScrapeBytes))
	if err != nil {
		return nil, fmt.Errorf("read usage from agent at %s: %w", endpoint, err)
	}
	return readings, nil
}

// parse turns the resource endpoint's text into readings; a VM needs both
// series with a timestamp to count.
func parse(r io.Reader) ([]Reading, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	byUID := map[types.UID]*Reading{}
	var order []types.UID
	each := func(name string, set func(*Reading, float64)) {
		f := families[name]
		if f == nil {
			return
		}
		for _, m := range f.GetMetric() {
			if m.TimestampMs == nil {
				continue
			}
			var ns, n, uid string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "namespace":
					ns = l.GetValue()
				case "name":
					n = l.GetValue()
				case "uid":
					uid = l.GetValue()
				}
			}
			if ns == "" || n == "" || uid == "" {
				continue
			}
			rd := byUID[types.UID(uid)]
			if rd == nil {
				rd = &Reading{UID: types.UID(uid), Namespace: ns, Name: n, MemoryBytes: -1, CPUSeconds: -1}
				byUID[rd.UID] = rd
				order = append(order, rd.UID)
			}
			rd.Time = time.UnixMilli(m.GetTimestampMs())
			set(rd, value(m))
		}
	}
	each(cpuMetric, func(rd *Reading, v float64) { rd.CPUSeconds = v })
	each(memoryMetric, func(rd *Reading, v float64) { rd.MemoryBytes = v })
	out := make([]Reading, 0, len(order))
	for _, uid := range order {
		if rd := byUID[uid]; rd.CPUSeconds >= 0 && rd.MemoryBytes >= 0 {
			out = append(out, *rd)
		}
	}
	return out, nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return -1
}
