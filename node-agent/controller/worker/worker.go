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

// Package worker is the loop every node agent controller runs its queue
// with: take a key, sync it, then forget it, look again after a while, or
// retry it with backoff after an error. Informer events, libvirt events and
// timers only add keys.
package worker

import (
	"context"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// Sync works on one key. A positive requeueAfter looks at the key again
// after that long; an error retries it with the queue's backoff.
type Sync func(ctx context.Context, key string) (requeueAfter time.Duration, err error)

// Queue is a typed rate-limited workqueue of namespace/name keys.
type Queue struct {
	workqueue.TypedRateLimitingInterface[string]
	name string
}

// NewQueue returns an empty queue; name shows in its metrics and logs.
func NewQueue(name string) *Queue {
	return NewQueueWithRateLimiter(name, workqueue.DefaultTypedControllerRateLimiter[string]())
}

// Enqueue adds the key of an informer's object (or of its tombstone).
func (q *Queue) Enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	q.Add(key)
}

// Run syncs keys with workers goroutines until ctx ends, then shuts the
// queue down and waits for the workers.
func (q *Queue) Run(ctx context.Context, workers int, syncKey Sync) {
	logger := klog.FromContext(ctx).WithValues("queue", q.name)
	ctx = klog.NewContext(ctx, logger)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			defer utilruntime.HandleCrashWithContext(ctx)
			for q.processNext(ctx, syncKey) {
			}
		})
	}
	<-ctx.Done()
	q.ShutDown()
	wg.Wait()
}

// processNext syncs one key; false once the queue is shut down.
func (q *Queue) processNext(ctx context.Context, syncKey Sync) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	start := time.Now()
	requeue, err := syncKey(ctx, key)
	observeSync(q.name, time.Since(start), err)
	switch {
	case err != nil:
		logger := klog.FromContext(ctx)
		if apierrors.IsConflict(err) {
			// Someone else wrote the object first: the retry sees theirs.
			logger.V(2).Info("Sync hit a write conflict, will retry", "key", key, "err", err)
		} else {
			logger.Error(err, "Sync failed, will retry", "key", key)
		}
		q.AddRateLimited(key)
	case requeue > 0:
		q.Forget(key)
		q.AddAfter(key, requeue)
	default:
		q.Forget(key)
	}
	return true
}

// Handler calls f with the object of every add, update and delete,
// unwrapping the tombstone of a delete the informer missed.
func Handler(f func(obj any)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    f,
		UpdateFunc: func(_, obj any) { f(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			f(obj)
		},
	}
}

// NewQueueWithRateLimiter is NewQueue with the retry backoff of limiter.
func NewQueueWithRateLimiter(name string, limiter workqueue.TypedRateLimiter[string]) *Queue {
	return &Queue{
		TypedRateLimitingInterface: workqueue.NewTypedRateLimitingQueueWithConfig(limiter,
			workqueue.TypedRateLimitingQueueConfig[string]{Name: name}),
		name: name,
	}
}
