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

package vm

import (
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// expectationTTL bounds how long a pass waits for the informer to deliver
// the controller's own status write (a lost watch event must not stall a
// VM for good; client-go's ControllerExpectations uses a timeout too).
const expectationTTL = 30 * time.Second

// staleCacheRetry is how soon a pass that found the cache older than the
// controller's last write looks again (the informer's event for the write
// usually enqueues the VM sooner).
const staleCacheRetry = time.Second

// statusExpectations remember, per VM key, the resourceVersion the
// controller's last status write produced, in the manner of client-go's
// ControllerExpectations: until the informer's cache holds that version or
// a newer one, the cache is stale and a pass would act on an old status
// (start a guest twice, or forget it stopped one).
type statusExpectations struct {
	clock clock.PassiveClock
	mu    sync.Mutex
	byKey map[string]expectation
}

type expectation struct {
	uid             types.UID
	resourceVersion string
	at              time.Time
}

func newStatusExpectations(clk clock.PassiveClock) *statusExpectations {
	return &statusExpectations{clock: clk, byKey: map[string]expectation{}}
}

// Expect records the VM as a status write returned it.
func (e *statusExpectations) Expect(key string, written *v1alpha1.VirtualMachine) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.byKey[key] = expectation{uid: written.UID, resourceVersion: written.ResourceVersion, at: e.clock.Now()}
}

// Satisfied says the cached VM is at least as new as the last write, and
// then forgets the expectation. A VM with another UID (deleted and
// re-created) or an expectation older than expectationTTL satisfies it.
func (e *statusExpectations) Satisfied(key string, cached *v1alpha1.VirtualMachine) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	exp, ok := e.byKey[key]
	if !ok {
		return true
	}
	if exp.uid != cached.UID || e.clock.Since(exp.at) > expectationTTL || !olderThan(cached.ResourceVersion, exp.resourceVersion) {
		delete(e.byKey, key)
		return true
	}
	return false
}

// Forget drops the expectation of a VM that is gone.
func (e *statusExpectations) Forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.byKey, key)
}

// olderThan compares resourceVersions. They are opaque to clients in
// general, but Vessel's storage is etcd, whose revisions are increasing
// integers; a version that is not one is never called older.
func olderThan(rv, than string) bool {
	a, errA := strconv.ParseUint(rv, 10, 64)
	b, errB := strconv.ParseUint(than, 10, 64)
	return errA == nil && errB == nil && a < b
}
