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

package launcher

import (
	"testing"
	"time"
)

func TestNextBackoff(t *testing.T) {
	tests := []struct {
		name             string
		previous, ranFor time.Duration
		want             time.Duration
	}{
		{"first exit", 0, 5 * time.Second, time.Second},
		{"first failed start", 0, 0, time.Second},
		{"crashed again soon: doubles", time.Second, 3 * time.Second, 2 * time.Second},
		{"keeps failing to start: doubles", 4 * time.Second, 0, 8 * time.Second},
		{"capped", 16 * time.Second, time.Second, 30 * time.Second},
		{"stays capped", 30 * time.Second, time.Second, 30 * time.Second},
		{"ran long enough: back to the start", 30 * time.Second, 2 * time.Minute, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextBackoff(tt.previous, tt.ranFor); got != tt.want {
				t.Errorf("nextBackoff(%v, %v) = %v, want %v", tt.previous, tt.ranFor, got, tt.want)
			}
		})
	}
}
