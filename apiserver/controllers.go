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

package apiserver

import (
	"context"
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	genericapiserver "k8s.io/apiserver/pkg/server"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apiserver/agentidentity"
	"github.com/vessel-vm/vessel/controller/agentcert"
	clonecontroller "github.com/vessel-vm/vessel/controller/clone"
	"github.com/vessel-vm/vessel/controller/heartbeat"
	migrationcontroller "github.com/vessel-vm/vessel/controller/migration"
	poolcontroller "github.com/vessel-vm/vessel/controller/pool"
	quotacontroller "github.com/vessel-vm/vessel/controller/quota"
	"github.com/vessel-vm/vessel/controller/scheduler"
	snapshotcontroller "github.com/vessel-vm/vessel/controller/snapshot"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
)

const (
	leaderElectionNamespace = "vessel-system"
	leaderElectionName      = "vessel-controllers"
)

// runControllers starts the scheduler, the heartbeat monitor, the snapshot
// controller (it fails snapshots and restores no agent can take), the clone
// controller (it creates a clone's VM), the pool controller and, with
// kube-apiserver, the quota controller (it recounts Vessel's usage in
// ResourceQuotas) and, with an agent signer, the agent serving certificate
// signer (controller/agentcert) against this server's own API. With several
// replicas only the holder of the Lease runs them: the
// Lease lives in kube-apiserver, so without a core client (a standalone
// server, as in integration tests) there is a single instance and no
// election.
//
// The controllers use shared, the admission plugins' informers, when there
// are some: one watch of the VMs and one cache in the process rather than
// two, each decoding every event (under bench-api, the in-process
// informers' share of the server's CPU went from 5.7 % to 4.9 %). Those informers run as long as the server does (stopped by
// ctx, not by the end of a term), so that a replica that leads again finds
// them running; what a term's controllers registered on them stays
// registered after the term, feeding queues that are shut down.
func runControllers(ctx context.Context, loopback *rest.Config, core kubernetes.Interface, shared informers.SharedInformerFactory, times ElectionTimes, identify agentidentity.Identifier, signer *agentcert.Signer) error {
	serverDone := ctx.Done()
	client, err := versioned.NewForConfig(loopback)
	if err != nil {
		return fmt.Errorf("create loopback client: %w", err)
	}
	run := func(ctx context.Context) {
		factory, stop := shared, serverDone
		if factory == nil {
			factory, stop = informers.NewSharedInformerFactory(client, 10*time.Minute), ctx.Done()
		}
		sched, err := scheduler.New(client, factory)
		if err != nil {
			klog.FromContext(ctx).Error(err, "Cannot start the scheduler")
			return
		}
		monitor, err := heartbeat.New(client, factory)
		if err != nil {
			klog.FromContext(ctx).Error(err, "Cannot start the heartbeat monitor")
			return
		}
		snapshots := snapshotcontroller.New(client, factory)
		// ResourceQuotas live in kube-apiserver: without it, no quota.
		if core != nil {
			coreFactory := kubeinformers.NewSharedInformerFactory(core, 10*time.Minute)
			quotas, err := quotacontroller.New(core, coreFactory, factory)
			if err != nil {
				klog.FromContext(ctx).Error(err, "Cannot start the quota controller")
				return
			}
			coreFactory.Start(ctx.Done())
			go quotas.Run(ctx)
		}
		// CSRs live in kube-apiserver too.
		if core != nil && signer != nil {
			csrFactory := agentcert.NewInformerFactory(core, 10*time.Minute)
			certs, err := agentcert.New(core, csrFactory, identify, signer)
			if err != nil {
				klog.FromContext(ctx).Error(err, "Cannot start the agent serving certificate signer")
				return
			}
			csrFactory.Start(ctx.Done())
			go certs.Run(ctx)
		}
		clones, err := clonecontroller.New(client, factory)
		if err != nil {
			klog.FromContext(ctx).Error(err, "Cannot start the clone controller")
			return
		}
		pools, err := poolcontroller.New(client, factory)
		if err != nil {
			klog.FromContext(ctx).Error(err, "Cannot start the pool controller")
			return
		}
		migrations, err := migrationcontroller.New(client, factory)
		if err != nil {
			klog.FromContext(ctx).Error(err, "Cannot start the migration controller")
			return
		}
		factory.Start(stop)
		go monitor.Run(ctx)
		go migrations.Run(ctx)
		go snapshots.Run(ctx)
		go clones.Run(ctx)
		go pools.Run(ctx)
		sched.Run(ctx)
	}
	if core == nil {
		go run(ctx)
		return nil
	}
	id, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("leader election identity: %w", err)
	}
	id = fmt.Sprintf("%s_%d", id, os.Getpid())
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, leaderElectionNamespace, leaderElectionName,
		core.CoreV1(), core.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: id})
	if err != nil {
		return fmt.Errorf("leader election lock: %w", err)
	}
	times = times.withDefaults()
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   times.LeaseDuration,
		RenewDeadline:   times.RenewDeadline,
		RetryPeriod:     times.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            leaderElectionName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				klog.FromContext(ctx).Info("Running the controllers", "identity", id)
				run(ctx)
			},
			OnStoppedLeading: func() { klog.FromContext(ctx).Info("Lost controller leadership", "identity", id) },
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	// A replica that lost the Lease (it could not renew in time) stands
	// again: it serves requests all the while, and must be able to take
	// the controllers over when the new holder dies in turn.
	go wait.UntilWithContext(ctx, elector.Run, times.RetryPeriod)
	return nil
}

// ElectionTimes time the controllers' Lease, as kube-controller-manager's
// --leader-elect-* flags do.
type ElectionTimes struct {
	// LeaseDuration is how long the other replicas wait after the
	// holder's last renewal before they take the Lease: the longest the
	// controllers stop when their replica dies.
	LeaseDuration time.Duration
	// RenewDeadline is how long the holder keeps trying to renew before it
	// stops its controllers; less than LeaseDuration.
	RenewDeadline time.Duration
	// RetryPeriod is how often the Lease is tried and renewed.
	RetryPeriod time.Duration
}

// DefaultControllersElection are kube-controller-manager's defaults.
var DefaultControllersElection = ElectionTimes{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}

func (t ElectionTimes) withDefaults() ElectionTimes {
	if t.LeaseDuration == 0 {
		t.LeaseDuration = DefaultControllersElection.LeaseDuration
	}
	if t.RenewDeadline == 0 {
		t.RenewDeadline = DefaultControllersElection.RenewDeadline
	}
	if t.RetryPeriod == 0 {
		t.RetryPeriod = DefaultControllersElection.RetryPeriod
	}
	return t
}

// Validate checks what leaderelection requires of the times.
func (t ElectionTimes) Validate() error {
	t = t.withDefaults()
	switch {
	case t.RetryPeriod <= 0:
		return fmt.Errorf("the controllers' retry period must be positive, got %v", t.RetryPeriod)
	case t.RenewDeadline <= time.Duration(leaderelection.JitterFactor*float64(t.RetryPeriod)):
		return fmt.Errorf("the controllers' renew deadline (%v) must exceed %v times the retry period (%v)", t.RenewDeadline, leaderelection.JitterFactor, t.RetryPeriod)
	case t.LeaseDuration <= t.RenewDeadline:
		return fmt.Errorf("the controllers' lease duration (%v) must exceed the renew deadline (%v)", t.LeaseDuration, t.RenewDeadline)
	}
	return nil
}

// controllersHook is the post-start hook that starts the controllers.
func controllersHook(core *rest.Config, shared informers.SharedInformerFactory, times ElectionTimes, identify agentidentity.Identifier, signer *agentcert.Signer) genericapiserver.PostStartHookFunc {
	return func(hook genericapiserver.PostStartHookContext) error {
		var coreClient kubernetes.Interface
		if core != nil {
			c, err := kubernetes.NewForConfig(core)
			if err != nil {
				return fmt.Errorf("create core client: %w", err)
			}
			coreClient = c
		}
		return runControllers(hook, hook.LoopbackClientConfig, coreClient, shared, times, identify, signer)
	}
}
