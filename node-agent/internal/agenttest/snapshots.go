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
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// CreateSnapshot creates a snapshot object named <vm>-<suffix>.
func (e *Env) CreateSnapshot(vm *v1alpha1.VirtualMachine, suffix string, memory bool, policy v1alpha1.SnapshotDeletionPolicy) *v1alpha1.VirtualMachineSnapshot {
	e.T.Helper()
	s, err := e.Client.VesselV1alpha1().VirtualMachineSnapshots(Namespace).Create(e.Ctx, &v1alpha1.VirtualMachineSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: vm.Name + "-" + suffix},
		Spec:       v1alpha1.VirtualMachineSnapshotSpec{VirtualMachineName: vm.Name, IncludeMemory: &memory, DeletionPolicy: policy},
	}, metav1.CreateOptions{})
	if err != nil {
		e.T.Fatalf("create snapshot of %s: %v", vm.Name, err)
	}
	return s
}

// Snapshot takes a snapshot and waits until it is ready.
func (e *Env) Snapshot(vm *v1alpha1.VirtualMachine, suffix string, memory bool, policy v1alpha1.SnapshotDeletionPolicy) *v1alpha1.VirtualMachineSnapshot {
	e.T.Helper()
	s := e.CreateSnapshot(vm, suffix, memory, policy)
	s = e.WaitSnapshot(s.Name, v1alpha1.SnapshotSucceeded)
	if !s.Status.ReadyToUse {
		e.T.Fatalf("snapshot %s Succeeded but not ready: %+v", s.Name, s.Status)
	}
	e.T.Logf("snapshot %s: memory=%v size=%v", s.Name, s.Status.MemoryIncluded, s.Status.Size)
	return s
}

// GetSnapshot reads the snapshot from the API.
func (e *Env) GetSnapshot(name string) *v1alpha1.VirtualMachineSnapshot {
	e.T.Helper()
	s, err := e.Client.VesselV1alpha1().VirtualMachineSnapshots(Namespace).Get(e.Ctx, name, metav1.GetOptions{})
	if err != nil {
		e.T.Fatalf("get snapshot %s: %v", name, err)
	}
	return s
}

// WaitSnapshot waits for a final phase; reaching the other one fails.
func (e *Env) WaitSnapshot(name string, phase v1alpha1.SnapshotPhase) *v1alpha1.VirtualMachineSnapshot {
	e.T.Helper()
	var last *v1alpha1.VirtualMachineSnapshot
	start := time.Now()
	err := wait.PollUntilContextTimeout(e.Ctx, 50*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		s, err := e.Client.VesselV1alpha1().VirtualMachineSnapshots(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = s
		if s.Status.Phase == v1alpha1.SnapshotFailed && phase != v1alpha1.SnapshotFailed {
			return false, fmt.Errorf("snapshot failed: %s", s.Status.Error)
		}
		return s.Status.Phase == phase, nil
	})
	if err != nil {
		e.T.Fatalf("snapshot %s: phase %s not reached: %v; last status: %+v", name, phase, err, last)
	}
	e.T.Logf("snapshot %s: %s after %.1fs", name, phase, time.Since(start).Seconds())
	return last
}

// DeleteSnapshot deletes the snapshot and waits until it is gone.
func (e *Env) DeleteSnapshot(name string) {
	e.T.Helper()
	snaps := e.Client.VesselV1alpha1().VirtualMachineSnapshots(Namespace)
	if err := snaps.Delete(e.Ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		e.T.Fatalf("delete snapshot %s: %v", name, err)
	}
	err := wait.PollUntilContextTimeout(e.Ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := snaps.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		s, _ := snaps.Get(e.Ctx, name, metav1.GetOptions{})
		e.T.Fatalf("snapshot %s still exists after delete: %+v", name, s)
	}
}

// Restore restores vm from a snapshot and waits until it succeeded. It
// remembers the console log's length, for WaitConsoleAfterRestore.
func (e *Env) Restore(vm *v1alpha1.VirtualMachine, snapshot string) *v1alpha1.VirtualMachineRestore {
	e.T.Helper()
	e.consoleMarks.Store(vm.UID, len(e.ConsoleText(vm)))
	r, err := e.Client.VesselV1alpha1().VirtualMachineRestores(Namespace).Create(e.Ctx, &v1alpha1.VirtualMachineRestore{
		ObjectMeta: metav1.ObjectMeta{GenerateName: vm.Name + "-restore-"},
		Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: vm.Name, SnapshotName: snapshot},
	}, metav1.CreateOptions{})
	if err != nil {
		e.T.Fatalf("create restore of %s: %v", vm.Name, err)
	}
	r = e.WaitRestore(r.Name, v1alpha1.SnapshotSucceeded)
	if !r.Status.Complete || r.Status.RestoreTime == nil {
		e.T.Errorf("restore %s succeeded with status %+v", r.Name, r.Status)
	}
	return r
}

// WaitRestore waits for a final phase; reaching the other one fails.
func (e *Env) WaitRestore(name string, phase v1alpha1.SnapshotPhase) *v1alpha1.VirtualMachineRestore {
	e.T.Helper()
	var last *v1alpha1.VirtualMachineRestore
	start := time.Now()
	err := wait.PollUntilContextTimeout(e.Ctx, 50*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		r, err := e.Client.VesselV1alpha1().VirtualMachineRestores(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = r
		if r.Status.Phase == v1alpha1.SnapshotFailed && phase != v1alpha1.SnapshotFailed {
			return false, fmt.Errorf("restore failed: %s", r.Status.Error)
		}
		return r.Status.Phase == phase, nil
	})
	if err != nil {
		e.T.Fatalf("restore %s: phase %s not reached: %v; last status: %+v", name, phase, err, last)
	}
	e.T.Logf("restore %s: %s after %.1fs", name, phase, time.Since(start).Seconds())
	return last
}

// WaitConsoleAfterRestore waits until the console output written since
// the restore began holds every marker, and returns that output. A revert
// starts a new QEMU, and virtlogd then starts the log afresh: a log shorter
// than before the restore is all new.
func (e *Env) WaitConsoleAfterRestore(vm *v1alpha1.VirtualMachine, markers ...string) string {
	e.T.Helper()
	var text string
	mark := 0
	if v, ok := e.consoleMarks.Load(vm.UID); ok {
		mark = v.(int)
	}
	err := wait.PollUntilContextTimeout(e.Ctx, 100*time.Millisecond, BootTimeout, true, func(context.Context) (bool, error) {
		text = e.ConsoleText(vm)
		if len(text) >= mark {
			text = text[mark:]
		}
		for _, m := range markers {
			if !strings.Contains(text, m) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		e.T.Fatalf("VM %s: console after the restore lacks %q; it has:\n%s", vm.Name, markers, Tail(text, 2000))
	}
	return text
}
