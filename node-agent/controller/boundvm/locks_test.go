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

import "testing"

func TestLocksAreTriedNotWaitedFor(t *testing.T) {
	var l Locks
	release, ok := l.TryLock("ns/a")
	if !ok {
		t.Fatal("first lock refused")
	}
	if _, ok := l.TryLock("ns/a"); ok {
		t.Error("a held lock was taken twice")
	}
	if r, ok := l.TryLock("ns/b"); !ok {
		t.Error("another VM's lock refused")
	} else {
		r()
	}
	release()
	if r, ok := l.TryLock("ns/a"); !ok {
		t.Error("a released lock refused")
	} else {
		r()
	}
}

func TestABusyLockTellsOfItsRelease(t *testing.T) {
	var l Locks
	release, ok := l.TryLock("ns/a")
	if !ok {
		t.Fatal("first lock refused")
	}
	told := 0
	if _, ok := l.TryLockOrNotify("ns/a", func() { told++ }); ok {
		t.Fatal("a held lock was taken twice")
	}
	if told != 0 {
		t.Fatal("told of a release before it happened")
	}
	release()
	if told != 1 {
		t.Fatalf("told %d times of one release, want once", told)
	}
	// Told once: the next holder's release tells nobody.
	r, ok := l.TryLockOrNotify("ns/a", func() { told++ })
	if !ok {
		t.Fatal("a released lock refused")
	}
	r()
	if told != 1 {
		t.Errorf("told %d times, want once (a lock taken asks for no notice)", told)
	}
}
