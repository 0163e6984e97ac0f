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
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/util/workqueue"
)

type recordingObserver struct {
	mu   sync.Mutex
	seen map[string][]error
}

func (r *recordingObserver) ObserveSync(queue string, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if took < 0 {
		panic("negative sync time")
	}
	r.seen[queue] = append(r.seen[queue], err)
}

func TestSyncObserverSeesEverySync(t *testing.T) {
	rec := &recordingObserver{seen: map[string][]error{}}
	SetSyncObserver(rec)
	SetSyncObserver(&recordingObserver{seen: map[string][]error{}}) // ignored: the first one stays

	q := NewQueueWithRateLimiter("observed", workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Millisecond, time.Millisecond))
	boom := errors.New("boom")
	calls := 0
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		q.Run(ctx, 1, func(context.Context, string) (time.Duration, error) {
			calls++
			if calls == 1 {
				return 0, boom
			}
			close(done)
			return 0, nil
		})
		close(stopped)
	}()
	q.Add("k")
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the key was not retried")
	}
	cancel()
	<-stopped

	rec.mu.Lock()
	defer rec.mu.Unlock()
	got := rec.seen["observed"]
	if len(got) != 2 || !errors.Is(got[0], boom) || got[1] != nil {
		t.Errorf("observer saw %v, want [boom <nil>]", got)
	}
}
