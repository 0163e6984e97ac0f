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

// Package nodestatus is the node agent's Hypervisor controller: it
// registers this node's Hypervisor, then keeps its status fresh with a
// heartbeat (capacity, allocation, versions, the console endpoint and a
// Ready condition that says whether the agent can run VMs: it is False
// while libvirtd is unreachable).
package nodestatus

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/worker"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// Config is what the controller reports and how often.
type Config struct {
	// Name names this node's Hypervisor object.
	Name string
	// Labels are put on the Hypervisor, for VM nodeSelectors.
	Labels map[string]string
	// Capacity of the host; zero fields are read from /proc (and MaxVMs).
	Capacity v1alpha1.HypervisorResources
	// ReservedCPUs and ReservedMemory are subtracted from capacity to get
	// allocatable.
	ReservedCPUs   int32
	ReservedMemory resource.Quantity
	// CPUAllocationRatio is how many vCPUs each host CPU left after the
	// reserve may back. Zero means 1.
	CPUAllocationRatio int32
	// MaxVMs is the number of VMs the node accepts.
	MaxVMs int32
	// DaemonEndpoint is the agent's console stream endpoint.
	DaemonEndpoint string
	// MigrationEndpoint is where the agent accepts incoming migrations
	// (empty: nowhere).
	MigrationEndpoint string
	AgentVersion      string
	// KVM says guests use hardware acceleration.
	KVM bool
	// HeartbeatInterval is how often the status is refreshed.
	HeartbeatInterval time.Duration
}

// Controller registers and heartbeats one Hypervisor. Its queue holds one
// key, the Hypervisor's name.
type Controller struct {
	cfg    Config
	client versioned.Interface
	hv     hypervisor.Hypervisor
	vms    listers.VirtualMachineLister
	clock  clock.PassiveClock
	queue  *worker.Queue

	mu  sync.Mutex
	uid string
	// ready is the Ready status last reported, for logging transitions.
	ready metav1.ConditionStatus
}

// New returns the controller. vms lists the VMs bound to this node (for
// status.allocated).
func New(cfg Config, client versioned.Interface, hv hypervisor.Hypervisor, vms listers.VirtualMachineLister, clk clock.PassiveClock) *Controller {
	return &Controller{
		cfg: cfg, client: client, hv: hv, vms: vms, clock: clk,
		// A failed heartbeat is retried soon, but never later than the
		// next one would have been.
		queue: worker.NewQueueWithRateLimiter("vessel-agent-nodestatus",
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, cfg.HeartbeatInterval)),
	}
}

// HypervisorUID is the UID of the registered Hypervisor object: it tells
// this control plane's domains from those of another control plane that
// uses the same hypervisor name on the same libvirtd. Empty before
// Register.
func (c *Controller) HypervisorUID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uid
}

func (c *Controller) setUID(uid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.uid = uid
}

// Register creates this node's Hypervisor (or brings its labels up to
// date) and reports its status once.
func (c *Controller) Register(ctx context.Context) error {
	hvs := c.client.VesselV1alpha1().Hypervisors()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		hv, err := hvs.Get(ctx, c.cfg.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			created, err := hvs.Create(ctx, &v1alpha1.Hypervisor{
				ObjectMeta: metav1.ObjectMeta{Name: c.cfg.Name, Labels: c.cfg.Labels},
			}, metav1.CreateOptions{})
			if err == nil {
				c.setUID(string(created.UID))
			}
			return err
		}
		if err != nil {
			return err
		}
		c.setUID(string(hv.UID))
		want := maps.Clone(hv.Labels)
		if want == nil {
			want = map[string]string{}
		}
		maps.Copy(want, c.cfg.Labels)
		if maps.Equal(want, hv.Labels) {
			return nil
		}
		hv.Labels = want
		_, err = hvs.Update(ctx, hv, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("register hypervisor %s: %w", c.cfg.Name, err)
	}
	_, err = c.sync(ctx, c.cfg.Name)
	return err
}

// Heartbeat asks for a status report now (after libvirtd reconnected, say)
// instead of at the next interval.
func (c *Controller) Heartbeat() { c.queue.Add(c.cfg.Name) }

// Run heartbeats until ctx ends. Call Register first.
func (c *Controller) Run(ctx context.Context) {
	c.queue.AddAfter(c.cfg.Name, c.cfg.HeartbeatInterval)
	c.queue.Run(ctx, 1, c.sync)
}

// sync reports the Hypervisor's status and schedules the next heartbeat.
func (c *Controller) sync(ctx context.Context, _ string) (time.Duration, error) {
	versions, libvirtErr := c.hv.Versions(ctx)
	ready := readyCondition(libvirtErr)
	capacity := hostCapacity(c.cfg.Capacity, c.cfg.MaxVMs)
	allocatable := allocatableOf(capacity, c.cfg.ReservedCPUs, c.cfg.ReservedMemory, c.cfg.CPUAllocationRatio)
	allocated := c.allocated()
	hvs := c.client.VesselV1alpha1().Hypervisors()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		hv, err := hvs.Get(ctx, c.cfg.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get hypervisor %s: %w", c.cfg.Name, err)
		}
		c.setUID(string(hv.UID))
		now := metav1.NewTime(c.clock.Now())
		st := &hv.Status
		st.Capacity = capacity
		st.Allocatable = allocatable
		st.Allocated = allocated
		st.DaemonEndpoint = c.cfg.DaemonEndpoint
		st.MigrationEndpoint = c.cfg.MigrationEndpoint
		if versions.Libvirt != "" {
			st.LibvirtVersion = versions.Libvirt
			st.QEMUVersion = versions.QEMU
		}
		st.AgentVersion = c.cfg.AgentVersion
		st.KVM = c.cfg.KVM
		st.LastHeartbeatTime = &now
		ready.ObservedGeneration = hv.Generation
		ready.LastTransitionTime = now
		meta.SetStatusCondition(&st.Conditions, ready)
		_, err = hvs.UpdateStatus(ctx, hv, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("report status of hypervisor %s: %w", c.cfg.Name, err)
	}
	c.logTransition(ctx, ready)
	return c.cfg.HeartbeatInterval, nil
}

func (c *Controller) logTransition(ctx context.Context, ready metav1.Condition) {
	c.mu.Lock()
	changed := c.ready != ready.Status
	c.ready = ready.Status
	c.mu.Unlock()
	if changed {
		klog.FromContext(ctx).Info("Hypervisor readiness", "ready", ready.Status, "reason", ready.Reason, "message", ready.Message)
	}
}

// allocated sums what the VMs bound to this node ask for.
func (c *Controller) allocated() v1alpha1.HypervisorResources {
	var vms []*v1alpha1.VirtualMachine
	if list, err := c.vms.List(labels.Everything()); err == nil {
		vms = list
	}
	return allocatedBy(vms)
}
