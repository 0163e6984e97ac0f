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

package v1alpha1

import (
	"math"
	"testing"
	"time"
)

func TestRestartBackoff(t *testing.T) {
	for count, want := range map[int32]time.Duration{
		0:             0, // the first restart is immediate
		1:             10 * time.Second,
		2:             20 * time.Second,
		3:             40 * time.Second,
		5:             160 * time.Second,
		6:             5 * time.Minute, // 320s, capped
		100:           5 * time.Minute,
		math.MaxInt32: 5 * time.Minute,
	} {
		if got := RestartBackoff(count); got != want {
			t.Errorf("RestartBackoff(%d) = %v, want %v", count, got, want)
		}
	}
}
