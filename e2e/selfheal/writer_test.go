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

package selfheal

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// writer writes through kube-apiserver as fast as a careful client would
// while components die and come back: ConfigMaps (kube-apiserver's etcd)
// and annotations on the guest's VM (the vessel-apiserver's etcd, through
// the aggregator). It remembers every write that was acknowledged; those
// must all be there afterwards. A write that failed may or may not have
// been committed, as for any client.
type writer struct {
	sys       *system
	namespace string
	vm        string
	round     string

	mu         sync.Mutex
	configMaps []string
	annotation []string
	failures   int
	lastErr    error

	stop func()
	done sync.WaitGroup
}

const roundLabel = "selfheal.vessel.dev/round"

func startWriter(t *testing.T, sys *system, namespace, vm, round string) *writer {
	t.Helper()
	// A round is named after a component, such as libvirtd@hv-1: its
	// names and keys take no '@'.
	round = strings.ReplaceAll(round, "@", ".")
	w := &writer{sys: sys, namespace: namespace, vm: vm, round: round}
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = func() {
		cancel()
		w.done.Wait()
	}
	t.Cleanup(w.stop)
	w.done.Go(func() { w.run(ctx) })
	return w
}

func (w *writer) run(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		name := fmt.Sprintf("%s-%d", w.round, i)
		w.write(ctx, func(ctx context.Context) error {
			_, err := w.sys.Kube.CoreV1().ConfigMaps(w.namespace).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{roundLabel: w.round}},
				Data:       map[string]string{"i": fmt.Sprint(i)},
			}, metav1.CreateOptions{})
			return err
		}, &w.configMaps, name)
		key := "selfheal.vessel.dev/" + name
		w.write(ctx, func(ctx context.Context) error {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"written"}}}`, key)
			_, err := w.sys.Vessel.VesselV1alpha1().VirtualMachines(w.namespace).Patch(ctx, w.vm, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			return err
		}, &w.annotation, key)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (w *writer) write(ctx context.Context, do func(context.Context) error, acked *[]string, name string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := do(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.failures++
		w.lastErr = err
		return
	}
	*acked = append(*acked, name)
}

// acked returns how many writes of each kind were acknowledged so far.
func (w *writer) acked() (configMaps, annotations int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.configMaps), len(w.annotation)
}

// waitAcked waits until both kinds of writes have been acknowledged n
// more times than (cm, an): the API answers writes again.
func (w *writer) waitAcked(t *testing.T, cm, an, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		gotCM, gotAn := w.acked()
		if gotCM >= cm+n && gotAn >= an+n {
			return
		}
		if time.Now().After(deadline) {
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("writes not acknowledged again within %v: %d ConfigMaps (from %d), %d annotations (from %d); %d failures, last: %v",
				timeout, gotCM, cm, gotAn, an, w.failures, w.lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// verify stops the writer and checks that every acknowledged write is
// there.
func (w *writer) verify(t *testing.T) {
	t.Helper()
	w.stop()
	ctx := t.Context()
	list, err := w.sys.Kube.CoreV1().ConfigMaps(w.namespace).List(ctx, metav1.ListOptions{LabelSelector: roundLabel + "=" + w.round})
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for _, cm := range list.Items {
		present[cm.Name] = true
	}
	var lost []string
	for _, name := range w.configMaps {
		if !present[name] {
			lost = append(lost, "ConfigMap "+name)
		}
	}
	vm, err := w.sys.Vessel.VesselV1alpha1().VirtualMachines(w.namespace).Get(ctx, w.vm, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range w.annotation {
		if _, ok := vm.Annotations[key]; !ok {
			lost = append(lost, "VM annotation "+key)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged writes are gone: %v", len(lost), lost)
	}
	t.Logf("%d ConfigMaps and %d VM annotations acknowledged, all present; %d writes failed meanwhile (last: %v)",
		len(w.configMaps), len(w.annotation), w.failures, w.lastErr)
}
