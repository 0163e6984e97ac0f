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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
)

// vm is the benchmark's VM: small, started at once, a disk and a NIC (the
// simulated hypervisors create no file for them).
func vm(name string) *v1alpha1.VirtualMachine {
	return &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "density"}},
		Spec: v1alpha1.VirtualMachineSpec{
			RunStrategy: v1alpha1.RunStrategyAlways,
			CPUs:        1,
			Memory:      resource.MustParse("128Mi"),
			Disks: []v1alpha1.Disk{
				{Name: "root", Blank: &v1alpha1.BlankSource{Size: resource.MustParse("1Gi")}},
				{Name: "seed", CloudInit: &v1alpha1.CloudInitSource{UserData: "#!/bin/sh\necho hello\n"}},
			},
			Interfaces: []v1alpha1.Interface{{Name: "default", Type: v1alpha1.InterfaceTypeUser}},
		},
	}
}

func vmName(i int) string { return fmt.Sprintf("vm-%05d", i) }

// runDensity creates the VMs at the paced rate, sampling every o.every,
// waits for them to run, and checks what the server holds.
func runDensity(ctx context.Context, env *environment, o options) (*result, error) {
	client, err := versioned.NewForConfig(env.admin)
	if err != nil {
		return nil, err
	}
	core, err := kubernetes.NewForConfig(env.admin)
	if err != nil {
		return nil, err
	}
	ns, err := core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "density-"}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create a namespace: %w", err)
	}
	vms := client.VesselV1alpha1().VirtualMachines(ns.Name)
	initial, err := vms.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	tr := newTracker()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		if err := tr.watch(watchCtx, client, ns.Name, initial.ResourceVersion); err != nil {
			log.Print(err)
		}
	}()

	res := &result{hypervisors: o.hypervisors, procNames: env.procs.names()}
	res.baseline = env.procs.sample()
	sample := func(created int) {
		s := progress{created: created, at: time.Now(), usage: env.procs.sample()}
		begin := time.Now()
		list, err := vms.List(ctx, metav1.ListOptions{})
		if err != nil {
			log.Printf("list VMs: %v", err)
		} else {
			s.listed, s.listTime = len(list.Items), time.Since(begin)
		}
		tr.mu.Lock()
		for _, v := range tr.vms {
			if !v.bound.IsZero() {
				s.bound++
			}
		}
		s.running = tr.running
		tr.mu.Unlock()
		res.progress = append(res.progress, s)
		log.Printf("%d created, %d bound, %d Running; list of %d in %v", s.created, s.bound, s.running, s.listed, s.listTime.Round(time.Millisecond))
	}

	// Creates are paced to the rate from a fixed start, so that a slow
	// request does not slow the ones after it (up to o.workers at once).
	var (
		failed  atomic.Int64
		created atomic.Int64
		wg      sync.WaitGroup
		sem     = make(chan struct{}, o.workers)
		samples = make(chan int, 64)
	)
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		for n := range samples {
			sample(n)
		}
	}()
	res.start = time.Now()
	if o.profile != "" {
		go profileServers(ctx, env, o.profile, 20*time.Second)
	}
	interval := time.Duration(float64(time.Second) / o.rate)
	for i := range o.vms {
		if d := time.Until(res.start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			name := vmName(i)
			tr.sent(name, time.Now())
			if _, err := vms.Create(ctx, vm(name), metav1.CreateOptions{}); err != nil {
				if failed.Add(1) <= 5 {
					log.Printf("create %s: %v", name, err)
				}
				return
			}
			tr.ack(name, time.Now())
			if n := int(created.Add(1)); n%o.every == 0 {
				samples <- n
			}
		})
	}
	wg.Wait()
	res.createEnd = time.Now()
	res.failedCreates = int(failed.Load())
	acked := int(created.Load())
	log.Printf("%d creates acknowledged (%d failed) in %v: %.1f/s", acked, res.failedCreates,
		res.createEnd.Sub(res.start).Round(time.Millisecond), float64(acked)/res.createEnd.Sub(res.start).Seconds())

	deadline := time.Now().Add(o.settle)
	for tr.runningCount() < acked && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	res.settled = time.Now()
	if acked%o.every != 0 {
		samples <- acked
	}
	close(samples)
	<-samplerDone
	// The watch may lag the last phase change a moment.
	time.Sleep(2 * time.Second)
	stopWatch()
	res.final = env.procs.sample()

	if err := res.verify(ctx, client, ns.Name, tr); err != nil {
		return nil, err
	}
	return res, nil
}

// verify lists every VM and accounts for each acknowledged create: it must
// exist, be bound to a simulated hypervisor, and be Running.
func (r *result) verify(ctx context.Context, client versioned.Interface, namespace string, tr *tracker) error {
	begin := time.Now()
	list, err := client.VesselV1alpha1().VirtualMachines(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list VMs to verify: %w", err)
	}
	r.finalListTime, r.finalListed = time.Since(begin), len(list.Items)
	byName := map[string]*v1alpha1.VirtualMachine{}
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	r.perNode = tr.nodes
	for name, t := range tr.vms {
		if t.acked.IsZero() {
			continue
		}
		r.acked++
		v, ok := byName[name]
		switch {
		case !ok:
			r.lost = append(r.lost, name)
		case !strings.HasPrefix(v.Spec.NodeName, simPrefix):
			r.unbound = append(r.unbound, name)
		case v.Status.Phase != v1alpha1.VirtualMachineRunning:
			r.notRunning = append(r.notRunning, fmt.Sprintf("%s (%s)", name, v.Status.Phase))
		}
		if !t.bound.IsZero() {
			r.toBound = append(r.toBound, t.bound.Sub(t.created))
			r.bindTimes = append(r.bindTimes, t.bound)
		}
		if !t.running.IsZero() {
			r.toRunning = append(r.toRunning, t.running.Sub(t.created))
		}
		if !t.added.IsZero() {
			r.watchDelay = append(r.watchDelay, max(0, t.added.Sub(t.acked)))
		}
		r.createLatency = append(r.createLatency, t.acked.Sub(t.created))
	}
	return nil
}
