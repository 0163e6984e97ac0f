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

func TestRunRetriesErrorsRequeuesAndForgets(t *testing.T) {
	q := NewQueueWithRateLimiter("test", workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Millisecond, 10*time.Millisecond))
	var mu sync.Mutex
	calls := map[string]int{}
	done := make(chan struct{})
	syncKey := func(_ context.Context, key string) (time.Duration, error) {
		mu.Lock()
		defer mu.Unlock()
		calls[key]++
		switch {
		case key == "flaky" && calls[key] < 3:
			return 0, errors.New("not yet")
		case key == "later" && calls[key] == 1:
			return 20 * time.Millisecond, nil
		}
		if calls["flaky"] >= 3 && calls["later"] >= 2 && calls["once"] >= 1 {
			select {
			case <-done:
			default:
				close(done)
			}
		}
		return 0, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { q.Run(ctx, 2, syncKey); close(stopped) }()
	for _, k := range []string{"flaky", "later", "once"} {
		q.Add(k)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("keys not worked off: %v", calls)
	}
	cancel()
	<-stopped
	mu.Lock()
	defer mu.Unlock()
	if calls["flaky"] != 3 || calls["later"] != 2 || calls["once"] != 1 {
		t.Errorf("sync calls %v: want flaky retried until it succeeds (3), later looked at again (2), once once", calls)
	}
	for _, k := range []string{"flaky", "later", "once"} {
		if n := q.NumRequeues(k); n != 0 {
			t.Errorf("%s: %d requeues remembered after success, want forgotten", k, n)
		}
	}
}
