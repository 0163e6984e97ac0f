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

package worker

import (
	"sync/atomic"
	"time"
)

// SyncObserver is told how every sync of every queue went: which queue,
// how long it took, and its error (nil on success).
type SyncObserver interface {
	ObserveSync(queue string, took time.Duration, err error)
}

// observer holds the process's SyncObserver, nil until one is set.
var observer atomic.Pointer[SyncObserver]

// SetSyncObserver sets the process's SyncObserver; only the first call
// counts. It is process-wide, as client-go's workqueue.SetProvider is for
// queue metrics, because queues are built deep inside each controller.
func SetSyncObserver(o SyncObserver) {
	observer.CompareAndSwap(nil, &o)
}

// observeSync reports one sync to the observer, if one is set.
func observeSync(queue string, took time.Duration, err error) {
	if o := observer.Load(); o != nil {
		(*o).ObserveSync(queue, took, err)
	}
}
