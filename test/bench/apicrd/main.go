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

// Command vessel-bench-api measures what the aggregation path costs: on one
// kube-apiserver, it creates, gets, lists and deletes N VirtualMachines
// through the APIService (kube-apiserver -> vessel-apiserver -> its etcd)
// and N objects of a CustomResourceDefinition with the same schema (taken
// from the server's own OpenAPI) served by kube-apiserver itself, and
// prints throughput and latency percentiles side by side. It does so in
// several rounds, alternating which path goes first (vessel, CRD; CRD,
// vessel; ...), and prints each number's median over the rounds with its
// range: one run, or one order, says little on a shared machine.
//
//	go run ./test/bench/apicrd                  # starts its own control plane
//	go run ./test/bench/apicrd --kubeconfig=... # uses a running one
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vessel-vm/vessel/launcher"
)

var vesselGVR = schema.GroupVersionResource{Group: "vessel.dev", Version: "v1alpha1", Resource: "virtualmachines"}

type options struct {
	n          int
	workers    int
	lists      int
	warmup     int
	rounds     int
	kubeconfig string
	stateDir   string
	verbose    bool
	// cpuProfile, when set, is where a CPU profile of the vessel-apiserver
	// over the measured rounds goes (it runs with --profiling then).
	cpuProfile string
	// vesselArgs are added to the command line of the vessel-apiserver
	// the benchmark starts.
	vesselArgs []string
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 500, "objects to create, get and delete through each path")
	flag.IntVar(&o.workers, "workers", 4, "concurrent requests")
	flag.IntVar(&o.lists, "lists", 50, "lists of all N objects through each path")
	flag.IntVar(&o.warmup, "warmup", 20, "unmeasured create/get/delete rounds first, through each path")
	flag.IntVar(&o.rounds, "rounds", 4, "measured rounds (even: each path goes first in half of them)")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "a running control plane with Vessel installed (admin rights: it creates a namespace and a CRD); default: start one")
	flag.StringVar(&o.stateDir, "state-dir", "", "with --kubeconfig: the state directory of a local control plane (make up: .vessel), to account CPU per process")
	flag.BoolVar(&o.verbose, "v", false, "log the control plane's start")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the vessel-apiserver over the measured rounds to this file (go tool pprof); needs the control plane the benchmark starts")
	flag.Func("vessel-apiserver-arg", "a flag for the vessel-apiserver the benchmark starts (repeat for more), for experiments such as --run-controllers=false", func(v string) error {
		o.vesselArgs = append(o.vesselArgs, v)
		return nil
	})
	flag.Parse()
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Fatalf("vessel-bench-api: %v", err)
	}
}

func run(ctx context.Context, o options) error {
	if o.n < 1 || o.workers < 1 || o.lists < 1 {
		return errors.New("-n, -workers and -lists must be positive")
	}
	if o.rounds < 2 || o.rounds%2 != 0 {
		return errors.New("-rounds must be even and at least 2, so that each path goes first as often as the other")
	}
	if (o.cpuProfile != "" || len(o.vesselArgs) > 0) && o.kubeconfig != "" {
		return errors.New("-cpuprofile and -vessel-apiserver-arg need the control plane the benchmark starts, not -kubeconfig")
	}
	cfg, stateDir, cluster, stopCluster, err := controlPlane(ctx, o)
	if err != nil {
		return err
	}
	defer stopCluster()
	var cpu *processCPU
	if stateDir != "" {
		if cpu, err = newProcessCPU(stateDir); err != nil {
			return err
		}
	}
	// Measure the servers, not client-go's rate limiter.
	cfg.QPS, cfg.Burst = -1, 0

	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	version, err := dc.ServerVersion()
	if err != nil {
		return fmt.Errorf("reach kube-apiserver: %w", err)
	}

	openAPISchema, err := vmStructuralSchema(dc)
	if err != nil {
		return err
	}
	if err := createCRD(ctx, client, openAPISchema); err != nil {
		return err
	}
	defer func() {
		if err := deleteCRD(context.Background(), client); err != nil {
			log.Print(err)
		}
	}()
	ns, err := core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "vessel-bench-"}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create a namespace: %w", err)
	}
	defer func() {
		if err := core.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{}); err != nil {
			log.Printf("delete namespace %s: %v", ns.Name, err)
		}
	}()

	paths := []*path{
		{apiVersion: "vessel.dev/v1alpha1", resource: client.Resource(vesselGVR).Namespace(ns.Name)},
		{apiVersion: crdGroup + "/" + crdVersion, resource: client.Resource(crdGVR).Namespace(ns.Name)},
	}
	if err := checkSchemaEnforced(ctx, map[string]dynamic.ResourceInterface{
		paths[0].apiVersion: paths[0].resource, paths[1].apiVersion: paths[1].resource,
	}, ns.Name); err != nil {
		return err
	}
	for _, p := range paths {
		if err := p.warmUp(ctx, ns.Name, o.warmup); err != nil {
			return err
		}
	}

	// Each operation runs through one path, then the other, so that both
	// see nearly the same machine state (etcd sizes, caches, compactions);
	// which goes first alternates by round (vessel, CRD; CRD, vessel; ...),
	// so that neither always inherits what the other left (garbage, warm
	// caches, a compaction due).
	ops := []struct {
		name  string
		count int
		op    func(p *path) func(context.Context, int) error
	}{
		{"create", o.n, func(p *path) func(context.Context, int) error { return p.create(ns.Name) }},
		{"get", o.n, func(p *path) func(context.Context, int) error { return p.get }},
		{fmt.Sprintf("list (%d items)", o.n), o.lists, func(p *path) func(context.Context, int) error { return p.list(o.n) }},
		{"delete", o.n, func(p *path) func(context.Context, int) error { return p.delete }},
	}
	rows := make([]row, len(ops))
	for i, op := range ops {
		rows[i].name = op.name
	}
	if o.cpuProfile != "" {
		profile, err := startCPUProfile(ctx, cluster)
		if err != nil {
			return err
		}
		defer func() {
			if err := profile.stop(o.cpuProfile); err != nil {
				log.Print(err)
			} else {
				log.Printf("CPU profile of the vessel-apiserver over the measured rounds: %s", o.cpuProfile)
			}
		}()
	}
	for round := range o.rounds {
		order := []int{0, 1}
		if round%2 == 1 {
			order = []int{1, 0}
		}
		for i, op := range ops {
			for _, which := range order {
				p := paths[which]
				var before map[string]time.Duration
				if cpu != nil {
					before = cpu.sample()
				}
				res, err := measure(ctx, op.count, o.workers, op.op(p))
				if err != nil {
					return fmt.Errorf("round %d: %s through %s: %w", round+1, op.name, p.apiVersion, err)
				}
				if cpu != nil {
					// What the operations set off (watch fan-out,
					// controllers) counts too.
					time.Sleep(cpuSettle)
					res.cpu = since(before, cpu.sample())
				}
				if which == 0 {
					rows[i].vessel = append(rows[i].vessel, res)
				} else {
					rows[i].crd = append(rows[i].crd, res)
				}
			}
		}
		log.Printf("round %d of %d done (%s first)", round+1, o.rounds, paths[order[0]].apiVersion)
	}

	fmt.Printf("vessel-bench-api: N=%d, %d workers, %d lists, %d rounds, kube-apiserver %s, GOMAXPROCS=%d, %d CPUs\n",
		o.n, o.workers, o.lists, o.rounds, version.GitVersion, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Printf("vessel: %s (aggregated: kube-apiserver -> vessel-apiserver -> embedded etcd)\n", vesselGVR.GroupVersion())
	fmt.Printf("CRD:    %s/%s (kube-apiserver -> its etcd), same schema\n", crdGroup, crdVersion)
	fmt.Printf("Each cell: median over the rounds [lowest-highest]; the paths alternate which goes first. vessel/CRD is the median of each round's ratio.\n\n")
	if err := printTable(os.Stdout, rows); err != nil {
		return err
	}
	if cpu == nil {
		return nil
	}
	fmt.Printf("\n(CPU sampled from /proc, including %v after each run for what it set off; median over the rounds)\n", cpuSettle)
	return printCPU(os.Stdout, rows)
}

// cpuSettle is how long CPU accounting waits after a run.
const cpuSettle = time.Second

// controlPlane returns the admin configuration of the control plane to
// measure and its local state directory, if known, starting one unless
// --kubeconfig names one.
func controlPlane(ctx context.Context, o options) (*rest.Config, string, *launcher.Cluster, func(), error) {
	if o.kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
		return cfg, o.stateDir, nil, func() {}, err
	}
	stateDir, err := os.MkdirTemp("", "vessel-bench-api-")
	if err != nil {
		return nil, "", nil, nil, err
	}
	logf := func(string, ...any) {}
	if o.verbose {
		logf = log.Printf
	}
	begin := time.Now()
	extra := o.vesselArgs
	if o.cpuProfile != "" {
		extra = append(extra, "--profiling=true")
	}
	c, err := launcher.Start(ctx, launcher.Options{StateDir: stateDir, NoAgent: true, VesselAPIServerArgs: extra, Logf: logf})
	if err != nil {
		return nil, "", nil, nil, fmt.Errorf("start a control plane (state in %s): %w", stateDir, err)
	}
	log.Printf("control plane up in %v (state in %s)", time.Since(begin).Round(time.Millisecond), stateDir)
	stop := func() {
		c.Stop()
		os.RemoveAll(stateDir)
	}
	cfg, err := c.AdminConfig()
	if err != nil {
		stop()
		return nil, "", nil, nil, err
	}
	return cfg, stateDir, c, stop, nil
}

// path is one way to store VirtualMachines: the APIService or the CRD.
type path struct {
	apiVersion string
	resource   dynamic.ResourceInterface
}

func name(i int) string { return fmt.Sprintf("vm-%06d", i) }

// vm is the same object for both paths: a small but complete VM.
func (p *path) vm(namespace, name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": p.apiVersion,
		"kind":       "VirtualMachine",
		"metadata":   map[string]any{"name": name, "namespace": namespace, "labels": map[string]any{"app": "bench"}},
		"spec": map[string]any{
			"runStrategy": "Halted",
			"cpus":        int64(1),
			"memory":      "128Mi",
			"disks": []any{
				map[string]any{"name": "root", "blank": map[string]any{"size": "1Gi"}},
				map[string]any{"name": "seed", "cloudInit": map[string]any{"userData": "#!/bin/sh\necho hello\n"}},
			},
			"interfaces":   []any{map[string]any{"name": "default", "type": "User"}},
			"nodeSelector": map[string]any{"disk": "ssd"},
		},
	}}
}

func (p *path) create(namespace string) func(context.Context, int) error {
	return func(ctx context.Context, i int) error {
		_, err := p.resource.Create(ctx, p.vm(namespace, name(i)), metav1.CreateOptions{})
		return err
	}
}

func (p *path) get(ctx context.Context, i int) error {
	_, err := p.resource.Get(ctx, name(i), metav1.GetOptions{})
	return err
}

func (p *path) list(want int) func(context.Context, int) error {
	return func(ctx context.Context, _ int) error {
		list, err := p.resource.List(ctx, metav1.ListOptions{})
		if err == nil && len(list.Items) != want {
			err = fmt.Errorf("listed %d objects, want %d", len(list.Items), want)
		}
		return err
	}
}

func (p *path) delete(ctx context.Context, i int) error {
	return p.resource.Delete(ctx, name(i), metav1.DeleteOptions{})
}

// warmUp opens connections and fills caches (discovery, authorization
// decisions) before anything is measured.
func (p *path) warmUp(ctx context.Context, namespace string, rounds int) error {
	for i := range rounds {
		name := fmt.Sprintf("warmup-%03d", i)
		if _, err := p.resource.Create(ctx, p.vm(namespace, name), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("warm up %s: %w", p.apiVersion, err)
		}
		if _, err := p.resource.Get(ctx, name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("warm up %s: %w", p.apiVersion, err)
		}
		if err := p.resource.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("warm up %s: %w", p.apiVersion, err)
		}
	}
	return nil
}
