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
	"sync"
	"time"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// vmBusyRetry is how soon a VM pass that found the VM busy (a snapshot or
// restore of it running) looks again.
const vmBusyRetry = 250 * time.Millisecond

// vmLocks serializes everything that drives one VM's domain: the VM
// reconciler, snapshots and restores. Each has its own workqueue (one key
// is never synced twice at once), but their keys differ, so without this a
// revert could race a start, or a snapshot a graceful stop. Nobody waits
// for a lock: a busy VM is retried shortly, so workers never block.
type vmLocks struct {
	mu   sync.Mutex
	held map[string]bool
}

// tryLock takes the VM's lock and returns its release, or false when the
// lock is held.
func (l *vmLocks) tryLock(key string) (func(), bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[key] {
		return nil, false
	}
	if l.held == nil {
		l.held = map[string]bool{}
	}
	l.held[key] = true
	return func() {
		l.mu.Lock()
		delete(l.held, key)
		l.mu.Unlock()
	}, true
}

// lockForSync takes the lock for a VM reconciler pass. While a restore of
// the VM is InProgress the reconciler stays away even between the
// restore's attempts (after an agent restart, say), so it never starts or
// stops a guest being reverted; a VM being deleted is not held back.
func (a *Agent) lockForSync(key string, vm *v1alpha1.VirtualMachine) (func(), bool) {
	if a.snapshots == nil {
		return func() {}, true
	}
	if vm.DeletionTimestamp == nil && a.snapshots.restoreInProgress(vm) {
		return nil, false
	}
	return a.snapshots.locks.tryLock(key)
}
