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

// Package integration tests the vessel-apiserver as a client sees it: a real
// in-process server on a real embedded etcd, driven through the generated
// typed clientset. Each top-level test starts its own server and gives every
// subtest its own namespace (or, for cluster-scoped kinds, its own names), so
// no test sees another's objects.
package integration

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
	vesselv1alpha1 "github.com/vessel-vm/vessel/generated/clientset/versioned/typed/vessel/v1alpha1"
)

// watchTimeout bounds the wait for one watch event; events normally arrive
// within milliseconds.
const watchTimeout = 10 * time.Second

var (
	uniqueCounter atomic.Int64
	notDNSLabel   = regexp.MustCompile(`[^a-z0-9]+`)
)

// unique returns a DNS label no other test uses, derived from the test's name
// so that leftovers in a failing test's output are easy to place.
func unique(t testing.TB) string {
	suffix := fmt.Sprintf("-%d", uniqueCounter.Add(1))
	name := notDNSLabel.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if max := 63 - len(suffix); len(name) > max {
		name = name[:max]
	}
	return strings.Trim(name, "-") + suffix
}

// vms is the VirtualMachine client of a namespace.
func vms(s *apiservertesting.TestServer, ns string) vesselv1alpha1.VirtualMachineInterface {
	return s.Client.VesselV1alpha1().VirtualMachines(ns)
}

// newVM returns the smallest VM a user can create: everything else defaults.
func newVM(name string) *v1alpha1.VirtualMachine {
	return &v1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func createVM(t testing.TB, s *apiservertesting.TestServer, ns string, vm *v1alpha1.VirtualMachine) *v1alpha1.VirtualMachine {
	t.Helper()
	created, err := vms(s, ns).Create(t.Context(), vm, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create VM %s/%s: %v", ns, vm.Name, err)
	}
	return created
}

func getVM(t testing.TB, s *apiservertesting.TestServer, ns, name string) *v1alpha1.VirtualMachine {
	t.Helper()
	vm, err := vms(s, ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get VM %s/%s: %v", ns, name, err)
	}
	return vm
}

// bindVM binds a VM to a hypervisor as the scheduler does.
func bindVM(t testing.TB, s *apiservertesting.TestServer, ns, name, node string) *v1alpha1.VirtualMachine {
	t.Helper()
	binding := &v1alpha1.VirtualMachineBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Target: node}
	vm, err := vms(s, ns).Bind(t.Context(), name, binding, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("bind VM %s/%s to %s: %v", ns, name, node, err)
	}
	return vm
}

// setStatus changes a VM's status through the status subresource, as the
// node agent does, retrying on write conflicts.
func setStatus(t testing.TB, s *apiservertesting.TestServer, ns, name string, change func(*v1alpha1.VirtualMachineStatus)) *v1alpha1.VirtualMachine {
	t.Helper()
	vm, err := updateStatus(t.Context(), s, ns, name, change)
	if err != nil {
		t.Fatalf("update status of VM %s/%s: %v", ns, name, err)
	}
	return vm
}

// statusRetry outlasts a burst of concurrent writes, even under -race.
var statusRetry = wait.Backoff{Steps: 20, Duration: 5 * time.Millisecond, Factor: 1.5, Jitter: 0.1, Cap: time.Second}

// updateStatus is setStatus for goroutines other than the test's.
func updateStatus(ctx context.Context, s *apiservertesting.TestServer, ns, name string, change func(*v1alpha1.VirtualMachineStatus)) (*v1alpha1.VirtualMachine, error) {
	var out *v1alpha1.VirtualMachine
	err := retry.RetryOnConflict(statusRetry, func() error {
		vm, err := vms(s, ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(&vm.Status)
		out, err = vms(s, ns).UpdateStatus(ctx, vm, metav1.UpdateOptions{})
		return err
	})
	return out, err
}

// setPhase reports a VM phase, as the node agent does.
func setPhase(t testing.TB, s *apiservertesting.TestServer, ns, name string, phase v1alpha1.VirtualMachinePhase) *v1alpha1.VirtualMachine {
	t.Helper()
	return setStatus(t, s, ns, name, func(st *v1alpha1.VirtualMachineStatus) { st.Phase = phase })
}

// wantAPIError fails t unless err is an API error with the HTTP code whose
// message contains substr. It returns the error's status for further checks.
func wantAPIError(t testing.TB, err error, code int32, substr string) metav1.Status {
	t.Helper()
	if err == nil {
		t.Fatalf("request succeeded; want HTTP %d containing %q", code, substr)
	}
	var apiErr apierrors.APIStatus
	if !errors.As(err, &apiErr) {
		t.Fatalf("got %v (%T); want an API error with HTTP %d", err, err, code)
	}
	status := apiErr.Status()
	if status.Code != code {
		t.Fatalf("got HTTP %d (%v); want %d", status.Code, err, code)
	}
	if !strings.Contains(status.Message, substr) {
		t.Fatalf("error message %q does not contain %q", status.Message, substr)
	}
	return status
}

// nextEvent returns the next watch event, failing t if none comes in time or
// the watch reports an error.
func nextEvent(t testing.TB, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch closed early")
		}
		if ev.Type == watch.Error {
			t.Fatalf("watch error: %v", apierrors.FromObject(ev.Object))
		}
		return ev
	case <-time.After(watchTimeout):
		t.Fatalf("no watch event within %v", watchTimeout)
	}
	return watch.Event{}
}

// noEvent fails t if the watch delivers an event within wait.
func noEvent(t testing.TB, w watch.Interface, wait time.Duration) {
	t.Helper()
	select {
	case ev := <-w.ResultChan():
		t.Fatalf("unexpected watch event %s %v", ev.Type, eventName(ev))
	case <-time.After(wait):
	}
}

func eventName(ev watch.Event) string {
	if o, ok := ev.Object.(metav1.Object); ok {
		return o.GetNamespace() + "/" + o.GetName()
	}
	return fmt.Sprintf("%T", ev.Object)
}

// names lists the names of a VM list, in order.
func vmNames(list *v1alpha1.VirtualMachineList) []string {
	out := make([]string, 0, len(list.Items))
	for _, vm := range list.Items {
		out = append(out, vm.Name)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// startServer starts a vessel-apiserver that serves the API alone: no
// scheduler or heartbeat monitor writes objects behind a test's back.
// It allows the host bridge br0.
func startServer(t testing.TB) *apiservertesting.TestServer {
	t.Helper()
	return apiservertesting.Start(t, apiservertesting.Options{DisableControllers: true, AllowedBridges: []string{"br0"}})
}

// createSnapshot creates a snapshot of an existing VM; ready reports it
// taken and ready to use, as the node agent would.
func createSnapshot(t testing.TB, s *apiservertesting.TestServer, ns, name, vm string, ready bool) *v1alpha1.VirtualMachineSnapshot {
	t.Helper()
	snaps := s.Client.VesselV1alpha1().VirtualMachineSnapshots(ns)
	snap, err := snaps.Create(t.Context(), &v1alpha1.VirtualMachineSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.VirtualMachineSnapshotSpec{VirtualMachineName: vm},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create snapshot %s/%s of %s: %v", ns, name, vm, err)
	}
	if !ready {
		return snap
	}
	snap.Status.Phase = v1alpha1.SnapshotSucceeded
	snap.Status.ReadyToUse = true
	snap, err = snaps.UpdateStatus(t.Context(), snap, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("mark snapshot %s/%s ready: %v", ns, name, err)
	}
	return snap
}
