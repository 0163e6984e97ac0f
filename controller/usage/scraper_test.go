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
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
	agentmetrics "github.com/vessel-vm/vessel/node-agent/metrics"
)

const (
	uidBusy = "11111111-1111-1111-1111-111111111111"
	uidIdle = "22222222-2222-2222-2222-222222222222"
)

// stepStats is libvirt as the agent sees it: each call the busy guest has
// used one more CPU second, the idle one none.
type stepStats struct {
	mu    sync.Mutex
	calls int
}

func (s *stepStats) AllDomainStats(context.Context) ([]hypervisor.DomainStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return []hypervisor.DomainStats{
		{UUID: uidBusy, State: hypervisor.StateRunning, HasCPU: true, CPUTime: uint64(s.calls) * 1e9,
			Memory: hypervisor.MemoryStats{HasRSS: true, RSS: 180 << 20}},
		{UUID: uidIdle, State: hypervisor.StateRunning, HasCPU: true, CPUTime: 5e9,
			Memory: hypervisor.MemoryStats{HasRSS: true, RSS: 90 << 20}},
	}, nil
}

// agent serves the real node agent's resource endpoint over TLS for the
// VMs given, as its stream server does.
func agent(t *testing.T, vms ...*v1alpha1.VirtualMachine) *httptest.Server {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, vm := range vms {
		if err := idx.Add(vm); err != nil {
			t.Fatal(err)
		}
	}
	reg := agentmetrics.NewRegistry(agentmetrics.Options{Hypervisor: "hv-1"})
	if err := reg.AddVMs(&stepStats{}, listers.NewVirtualMachineLister(idx)); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+agentmetrics.ResourcePath, reg.ResourceHandler())
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func hypervisors(t *testing.T, hvs ...*v1alpha1.Hypervisor) listers.HypervisorLister {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, hv := range hvs {
		if err := idx.Add(hv); err != nil {
			t.Fatal(err)
		}
	}
	return listers.NewHypervisorLister(idx)
}

func hv(name, endpoint string, ready metav1.ConditionStatus) *v1alpha1.Hypervisor {
	return &v1alpha1.Hypervisor{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: v1alpha1.HypervisorStatus{
			DaemonEndpoint: endpoint,
			Conditions:     []metav1.Condition{{Type: v1alpha1.HypervisorConditionReady, Status: ready}},
		},
	}
}

func vm(ns, name, uid string) *v1alpha1.VirtualMachine {
	return &v1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}}
}

// The scraper reads what the agent's resource endpoint serves: the two
// sides agree on the path, the metric names and the labels.
func TestScraperReadsTheAgentsResourceEndpoint(t *testing.T) {
	srv := agent(t, vm("team-a", "busy", uidBusy), vm("team-b", "idle", uidIdle))
	if agentmetrics.ResourcePath != resourcePath || agentmetrics.ResourceCPUMetric != cpuMetric || agentmetrics.ResourceMemoryMetric != memoryMetric {
		t.Fatal("the agent's resource endpoint and the scraper disagree on the path or the metric names")
	}
	endpoint := strings.TrimPrefix(srv.URL, "https://")
	store := NewStore()
	s := New(hypervisors(t, hv("hv-1", endpoint, metav1.ConditionTrue)), anyName{srv.Client().Transport}, store, time.Second)
	s.ScrapeOnce(context.Background())
	// The agent stamps readings in milliseconds: the next one must differ.
	time.Sleep(20 * time.Millisecond)
	s.ScrapeOnce(context.Background())

	busy, ok := store.VMUsage(uidBusy, "hv-1")
	if !ok {
		t.Fatal("no usage of the busy VM after two scrapes")
	}
	idle, ok := store.VMUsage(uidIdle, "hv-1")
	if !ok {
		t.Fatal("no usage of the idle VM after two scrapes")
	}
	// One CPU second in a few milliseconds: far above one core.
	if cpu := busy.Usage[corev1.ResourceCPU]; cpu.MilliValue() < 1000 {
		t.Errorf("busy VM uses %s cores; want more than 1", cpu.String())
	}
	if cpu := idle.Usage[corev1.ResourceCPU]; cpu.MilliValue() != 0 {
		t.Errorf("idle VM uses %s cores; want 0", cpu.String())
	}
	if mem := busy.Usage[corev1.ResourceMemory]; mem.Value() != 180<<20 {
		t.Errorf("busy VM's memory = %s; want 180Mi", mem.String())
	}
}

func TestScraperForgetsAgentsItCannotRead(t *testing.T) {
	srv := agent(t, vm("team-a", "busy", uidBusy))
	endpoint := strings.TrimPrefix(srv.URL, "https://")
	store := NewStore()
	store.Update("hv-gone", []Reading{{UID: "x", Time: time.Now()}})
	store.Update("hv-notready", []Reading{{UID: "y", Time: time.Now()}})
	lister := hypervisors(t,
		hv("hv-1", endpoint, metav1.ConditionTrue),
		hv("hv-notready", endpoint, metav1.ConditionFalse),
		hv("hv-broken", "127.0.0.1:1", metav1.ConditionTrue),
	)
	New(lister, anyName{srv.Client().Transport}, store, time.Second).ScrapeOnce(context.Background())
	nodes := store.Nodes()
	if len(nodes) != 1 || !nodes["hv-1"] {
		t.Errorf("nodes with usage after a scrape = %v; want only hv-1 (deleted, not Ready and unreachable agents forgotten)", nodes)
	}
}

// An agent that does not present a certificate the apiserver trusts is not
// read: the transport's TLS settings are the apiserver's.
func TestScraperRefusesAnUntrustedAgent(t *testing.T) {
	srv := agent(t, vm("team-a", "busy", uidBusy))
	store := NewStore()
	s := New(hypervisors(t, hv("hv-1", strings.TrimPrefix(srv.URL, "https://"), metav1.ConditionTrue)), anyName{&http.Transport{}}, store, time.Second)
	s.ScrapeOnce(context.Background())
	if len(store.Nodes()) != 0 {
		t.Error("usage read from an agent whose certificate is not trusted")
	}
}

// anyName reaches every hypervisor's agent with one transport.
type anyName struct{ http.RoundTripper }

func (a anyName) ForHypervisor(string) http.RoundTripper { return a.RoundTripper }

// byName verifies each agent's certificate against its hypervisor's name,
// as the apiserver's transports do.
type byName struct{ base *http.Transport }

func (b byName) ForHypervisor(name string) http.RoundTripper {
	tr := b.base.Clone()
	tr.TLSClientConfig.ServerName = name
	return tr
}

// An endpoint whose certificate is not issued for the hypervisor that
// publishes it is not read: it cannot report VMs as another node's.
func TestScraperRefusesAnotherHypervisorsCertificate(t *testing.T) {
	srv := agent(t, vm("team-a", "busy", uidBusy))
	endpoint := strings.TrimPrefix(srv.URL, "https://")
	store := NewStore()
	// httptest's certificate is issued for example.com.
	lister := hypervisors(t, hv("example.com", endpoint, metav1.ConditionTrue), hv("hv-1", endpoint, metav1.ConditionTrue))
	New(lister, byName{srv.Client().Transport.(*http.Transport)}, store, time.Second).ScrapeOnce(context.Background())
	nodes := store.Nodes()
	if len(nodes) != 1 || !nodes["example.com"] {
		t.Errorf("nodes with usage = %v; want only example.com, whose certificate the agent presents", nodes)
	}
}
