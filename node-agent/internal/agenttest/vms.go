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

package agenttest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// GuestVM is a VM booting the test guest from URL images, with a data disk
// overlay and, when userData is set, a cloud-init seed.
func (e *Env) GuestVM(name string, strategy v1alpha1.RunStrategy, userData string) *v1alpha1.VirtualMachine {
	grace := int64(10)
	vm := &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace},
		Spec: v1alpha1.VirtualMachineSpec{
			RunStrategy: strategy,
			CPUs:        1,
			Memory:      resource.MustParse("96Mi"),
			Kernel: &v1alpha1.KernelBoot{
				Kernel:  v1alpha1.FileSource{Image: e.Images["vmlinuz"].Source()},
				Initrd:  &v1alpha1.FileSource{Image: e.Images["initrd.img"].Source()},
				Cmdline: "console=ttyS0 quiet",
			},
			Disks:                         []v1alpha1.Disk{{Name: "data", Image: e.Images["disk.img"].Source()}},
			TerminationGracePeriodSeconds: &grace,
		},
	}
	if userData != "" {
		vm.Spec.Disks = append(vm.Spec.Disks, v1alpha1.Disk{Name: "seed", CloudInit: &v1alpha1.CloudInitSource{UserData: userData}})
	}
	return vm
}

// Create creates vm and binds it to the test's hypervisor.
func (e *Env) Create(vm *v1alpha1.VirtualMachine) *v1alpha1.VirtualMachine {
	e.T.Helper()
	vms := e.Client.VesselV1alpha1().VirtualMachines(vm.Namespace)
	if _, err := vms.Create(e.Ctx, vm, metav1.CreateOptions{}); err != nil {
		e.T.Fatalf("create VM %s: %v", vm.Name, err)
	}
	bound, err := vms.Bind(e.Ctx, vm.Name, &v1alpha1.VirtualMachineBinding{
		ObjectMeta: metav1.ObjectMeta{Name: vm.Name}, Target: e.HypervisorName,
	}, metav1.CreateOptions{})
	if apierrors.IsConflict(err) {
		// A scheduler in the server may have bound it first; to us is fine.
		bound, err = vms.Get(e.Ctx, vm.Name, metav1.GetOptions{})
		if err == nil && bound.Spec.NodeName != e.HypervisorName {
			e.T.Fatalf("VM %s was bound to %q, not to the test's hypervisor", vm.Name, bound.Spec.NodeName)
		}
	}
	if err != nil {
		e.T.Fatalf("bind VM %s: %v", vm.Name, err)
	}
	return bound
}

// Get reads the VM from the API.
func (e *Env) Get(name string) *v1alpha1.VirtualMachine {
	e.T.Helper()
	vm, err := e.Client.VesselV1alpha1().VirtualMachines(Namespace).Get(e.Ctx, name, metav1.GetOptions{})
	if err != nil {
		e.T.Fatalf("get VM %s: %v", name, err)
	}
	return vm
}

// Update reads the VM, applies edit and writes it back, again on a conflict:
// the agent writes status all the time, so a VM read earlier is usually stale.
func (e *Env) Update(name string, edit func(*v1alpha1.VirtualMachine)) *v1alpha1.VirtualMachine {
	e.T.Helper()
	vms := e.Client.VesselV1alpha1().VirtualMachines(Namespace)
	var out *v1alpha1.VirtualMachine
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		vm, err := vms.Get(e.Ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		edit(vm)
		out, err = vms.Update(e.Ctx, vm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		e.T.Fatalf("update VM %s: %v", name, err)
	}
	return out
}

// WaitVM waits until cond holds for the VM and returns it.
func (e *Env) WaitVM(name, what string, timeout time.Duration, cond func(*v1alpha1.VirtualMachine) bool) *v1alpha1.VirtualMachine {
	e.T.Helper()
	var last *v1alpha1.VirtualMachine
	start := time.Now()
	err := wait.PollUntilContextTimeout(e.Ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		vm, err := e.Client.VesselV1alpha1().VirtualMachines(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = vm
		return cond(vm), nil
	})
	if err != nil {
		e.T.Fatalf("VM %s: %s not reached within %s; last status: %s", name, what, timeout, Describe(last))
	}
	e.T.Logf("VM %s: %s after %.1fs", name, what, time.Since(start).Seconds())
	return last
}

// WaitPhase waits until the VM is in phase.
func (e *Env) WaitPhase(name string, phase v1alpha1.VirtualMachinePhase, timeout time.Duration) *v1alpha1.VirtualMachine {
	e.T.Helper()
	return e.WaitVM(name, "phase "+string(phase), timeout, func(vm *v1alpha1.VirtualMachine) bool {
		return vm.Status.Phase == phase
	})
}

// WaitGone waits until the VM no longer exists.
func (e *Env) WaitGone(name string, timeout time.Duration) {
	e.T.Helper()
	vms := e.Client.VesselV1alpha1().VirtualMachines(Namespace)
	err := wait.PollUntilContextTimeout(e.Ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		_, err := vms.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		vm, _ := vms.Get(e.Ctx, name, metav1.GetOptions{})
		e.T.Fatalf("VM %s not deleted within %s: %s", name, timeout, Describe(vm))
	}
}

// Describe summarizes a VM's status for failure messages.
func Describe(vm *v1alpha1.VirtualMachine) string {
	if vm == nil {
		return "<none>"
	}
	var conds []string
	for _, c := range vm.Status.Conditions {
		conds = append(conds, fmt.Sprintf("%s=%s(%s: %s)", c.Type, c.Status, c.Reason, c.Message))
	}
	return fmt.Sprintf("phase=%s stopReason=%s observedAction=%d disks=%+v ifaces=%+v conditions=[%s]",
		vm.Status.Phase, vm.Status.StopReason, vm.Status.ObservedPowerActionID, vm.Status.Disks, vm.Status.Interfaces, strings.Join(conds, "; "))
}

// Condition is the VM's condition of type typ, or nil.
func Condition(vm *v1alpha1.VirtualMachine, typ string) *metav1.Condition {
	for i := range vm.Status.Conditions {
		if vm.Status.Conditions[i].Type == typ {
			return &vm.Status.Conditions[i]
		}
	}
	return nil
}

// Domain is the VM's libvirt domain, or nil.
func (e *Env) Domain(vm *v1alpha1.VirtualMachine) *hypervisor.Domain {
	e.T.Helper()
	d, err := e.Libvirt.Lookup(e.Ctx, string(vm.UID))
	if errors.Is(err, hypervisor.ErrNotFound) {
		return nil
	}
	if err != nil {
		e.T.Fatalf("look up domain of %s: %v", vm.Name, err)
	}
	return d
}

// QEMUPID is the QEMU process of a running VM, from libvirt's pid file.
func (e *Env) QEMUPID(vm *v1alpha1.VirtualMachine) int {
	e.T.Helper()
	d := e.Domain(vm)
	if d == nil {
		e.T.Fatalf("QEMU pid of %s: no domain", vm.Name)
	}
	b, err := os.ReadFile(e.LibvirtHost.QEMUPIDFile(d.Name))
	if err != nil {
		e.T.Fatalf("QEMU pid of %s: %v", vm.Name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		e.T.Fatalf("QEMU pid of %s: %v", vm.Name, err)
	}
	return pid
}

// ConsolePath is where virtlogd writes the VM's console.
func (e *Env) ConsolePath(vm *v1alpha1.VirtualMachine) string {
	return filepath.Join(e.StateDir, "vms", string(vm.UID), "console.log")
}

// ConsoleText is the VM's console log so far, without carriage returns.
func (e *Env) ConsoleText(vm *v1alpha1.VirtualMachine) string {
	b, _ := os.ReadFile(e.ConsolePath(vm))
	return strings.ReplaceAll(string(b), "\r", "")
}

// WaitConsole waits until the VM's console log contains every marker.
func (e *Env) WaitConsole(vm *v1alpha1.VirtualMachine, timeout time.Duration, markers ...string) {
	e.T.Helper()
	var text string
	err := wait.PollUntilContextTimeout(e.Ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		text = e.ConsoleText(vm)
		for _, m := range markers {
			if !strings.Contains(text, m) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		e.T.Fatalf("VM %s: console lacks %q after %s; console:\n%s", vm.Name, markers, timeout, Tail(text, 2000))
	}
}

// Tail is the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
