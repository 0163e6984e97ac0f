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

package boundvm

import (
	"sync"
	"time"
)

// BusyRetry is how soon work that found its VM locked looks again.
const BusyRetry = 250 * time.Millisecond

// Locks serializes everything that drives one VM's domain: the VM
// controller, snapshots and restores. Each controller has its own
// workqueue (one key is never synced twice at once), but their keys
// differ, so without this a revert could race a start, or a snapshot a
// graceful stop. Nobody waits for a lock: a busy VM is retried after
// BusyRetry, so workers never block; work that must not wait that long
// asks to be told of the release instead (TryLockOrNotify).
type Locks struct {
	mu   sync.Mutex
	held map[string]bool
	// notify are called once at the next release of a key.
	notify map[string][]func()
}

// TryLock takes the lock of the VM with key namespace/name and returns its
// release, or false when the lock is held.
func (l *Locks) TryLock(key string) (release func(), ok bool) {
	return l.TryLockOrNotify(key, nil)
}

// TryLockOrNotify is TryLock that, when the lock is held and notify is not
// nil, has notify called once the holder releases it (after the release):
// a clone whose new VM another controller syncs for a moment goes on at
// once, not after BusyRetry. notify must not block; enqueueing a key is
// what it is for.
func (l *Locks) TryLockOrNotify(key string, notify func()) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[key] {
		if notify != nil {
			if l.notify == nil {
				l.notify = map[string][]func(){}
			}
			l.notify[key] = append(l.notify[key], notify)
		}
		return nil, false
	}
	if l.held == nil {
		l.held = map[string]bool{}
	}
	l.held[key] = true
	return func() {
		l.mu.Lock()
		delete(l.held, key)
		waiting := l.notify[key]
		delete(l.notify, key)
		l.mu.Unlock()
		for _, f := range waiting {
			f()
		}
	}, true
}
