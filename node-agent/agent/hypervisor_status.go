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

package agent

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// register creates this node's Hypervisor (or brings its labels up to
// date) and reports its status once.
func (a *Agent) register(ctx context.Context) error {
	hvs := a.client.VesselV1alpha1().Hypervisors()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		hv, err := hvs.Get(ctx, a.cfg.HypervisorName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = hvs.Create(ctx, &v1alpha1.Hypervisor{
				ObjectMeta: metav1.ObjectMeta{Name: a.cfg.HypervisorName, Labels: a.cfg.Labels},
			}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		want := maps.Clone(hv.Labels)
		if want == nil {
			want = map[string]string{}
		}
		maps.Copy(want, a.cfg.Labels)
		if maps.Equal(want, hv.Labels) {
			return nil
		}
		hv.Labels = want
		_, err = hvs.Update(ctx, hv, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("register hypervisor %s: %w", a.cfg.HypervisorName, err)
	}
	return a.reportHypervisor(ctx)
}

// heartbeat keeps the Hypervisor's status fresh; a controller marks it not
// Ready when heartbeats stop.
func (a *Agent) heartbeat(ctx context.Context) {
	if err := a.reportHypervisor(ctx); err != nil {
		klog.FromContext(ctx).Error(err, "Heartbeat failed")
	}
}

func (a *Agent) reportHypervisor(ctx context.Context) error {
	versions, err := a.hv.Versions(ctx)
	if err != nil {
		klog.FromContext(ctx).V(2).Info("Reading hypervisor versions failed", "err", err)
	}
	capacity := a.capacity()
	allocatable := v1alpha1.HypervisorResources{
		CPUs:   max(capacity.CPUs-a.cfg.ReservedCPUs, 0) * max(a.cfg.CPUAllocationRatio, 1),
		Memory: capacity.Memory.DeepCopy(),
		VMs:    capacity.VMs,
	}
	allocatable.Memory.Sub(a.cfg.ReservedMemory)
	if allocatable.Memory.Sign() < 0 {
		allocatable.Memory = resource.MustParse("0")
	}
	allocated := a.allocated()
	hvs := a.client.VesselV1alpha1().Hypervisors()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		hv, err := hvs.Get(ctx, a.cfg.HypervisorName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get hypervisor %s: %w", a.cfg.HypervisorName, err)
		}
		now := metav1.NewTime(a.now())
		st := &hv.Status
		st.Capacity = capacity
		st.Allocatable = allocatable
		st.Allocated = allocated
		st.DaemonEndpoint = a.cfg.DaemonEndpoint
		if versions.Libvirt != "" {
			st.LibvirtVersion = versions.Libvirt
			st.QEMUVersion = versions.QEMU
		}
		st.AgentVersion = a.cfg.AgentVersion
		st.KVM = a.cfg.KVM
		st.LastHeartbeatTime = &now
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type:               v1alpha1.HypervisorConditionReady,
			Status:             metav1.ConditionTrue,
			Reason:             "AgentHeartbeat",
			Message:            "the node agent is posting heartbeats",
			ObservedGeneration: hv.Generation,
			LastTransitionTime: now,
		})
		_, err = hvs.UpdateStatus(ctx, hv, metav1.UpdateOptions{})
		return err
	})
}

// allocated sums what the VMs bound to this node ask for.
func (a *Agent) allocated() v1alpha1.HypervisorResources {
	var out v1alpha1.HypervisorResources
	out.Memory = resource.MustParse("0")
	vms, err := a.lister.List(labels.Everything())
	if err != nil {
		return out
	}
	for _, vm := range vms {
		out.VMs++
		out.CPUs += max(vm.Spec.CPUs, 1)
		out.Memory.Add(vm.Spec.Memory)
	}
	return out
}

// capacity is the host's CPUs and memory (from /proc unless configured)
// and the VM limit.
func (a *Agent) capacity() v1alpha1.HypervisorResources {
	c := *a.cfg.Capacity.DeepCopy()
	if c.CPUs == 0 {
		c.CPUs = hostCPUs()
	}
	if c.Memory.IsZero() {
		c.Memory = *resource.NewQuantity(hostMemory(), resource.BinarySI)
	}
	if c.VMs == 0 {
		c.VMs = a.cfg.MaxVMs
	}
	return c
}

func hostCPUs() int32 {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 1
	}
	defer f.Close()
	var n int32
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "processor") {
			n++
		}
	}
	return max(n, 1)
}

func hostMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kib, err := strconv.ParseInt(fields[1], 10, 64)
			if err == nil {
				return kib * 1024
			}
		}
	}
	return 0
}
