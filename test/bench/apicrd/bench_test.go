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

package main

import "testing"

func TestSpreadOf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []float64
		want   spread
	}{
		{"odd count: the middle value", []float64{30, 10, 20}, spread{median: 20, low: 10, high: 30}},
		{"even count: the mean of the middle two", []float64{40, 10, 30, 20}, spread{median: 25, low: 10, high: 40}},
		{"one round", []float64{7}, spread{median: 7, low: 7, high: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.values...)
			if got := spreadOf(in); got != tc.want {
				t.Errorf("spreadOf(%v) = %+v, want %+v", tc.values, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.values[i] {
					t.Fatalf("spreadOf reordered its argument: %v", in)
				}
			}
		})
	}
	if got := (spread{median: 812.4, low: 790, high: 840.6}).format("%.0f"); got != "812 [790-841]" {
		t.Errorf("format = %q", got)
	}
}
