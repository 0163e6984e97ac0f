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
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func TestStatusExpectations(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	vmAt := func(uid types.UID, rv string) *v1alpha1.VirtualMachine {
		return &v1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{UID: uid, ResourceVersion: rv}}
	}
	e := newStatusExpectations(clk)
	if !e.Satisfied("ns/a", vmAt("u1", "5")) {
		t.Fatal("no write yet, but the cache counts as stale")
	}

	e.Expect("ns/a", vmAt("u1", "12"))
	if e.Satisfied("ns/a", vmAt("u1", "11")) {
		t.Error("a cache older than the write counts as fresh")
	}
	if !e.Satisfied("ns/b", vmAt("u9", "1")) {
		t.Error("another VM's write made this one's cache stale")
	}
	if !e.Satisfied("ns/a", vmAt("u1", "12")) {
		t.Error("the cache holding the write counts as stale")
	}
	if !e.Satisfied("ns/a", vmAt("u1", "3")) {
		t.Error("a satisfied expectation was not forgotten")
	}

	e.Expect("ns/a", vmAt("u1", "20"))
	if !e.Satisfied("ns/a", vmAt("u1", "25")) {
		t.Error("a cache newer than the write (someone wrote after it) counts as stale")
	}

	e.Expect("ns/a", vmAt("u1", "30"))
	if !e.Satisfied("ns/a", vmAt("u2", "2")) {
		t.Error("a re-created VM waits for its predecessor's write")
	}

	e.Expect("ns/a", vmAt("u1", "40"))
	clk.SetTime(clk.Now().Add(expectationTTL + time.Second))
	if !e.Satisfied("ns/a", vmAt("u1", "39")) {
		t.Error("an expectation outlived its TTL")
	}

	e.Expect("ns/a", vmAt("u1", "50"))
	e.Forget("ns/a")
	if !e.Satisfied("ns/a", vmAt("u1", "1")) {
		t.Error("a forgotten expectation still holds")
	}
}
