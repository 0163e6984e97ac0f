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

package registry

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

func TestBytes(t *testing.T) {
	for in, want := range map[string]string{
		"0":          "0",
		"512":        "512",
		"128Mi":      "128Mi",
		"24684096Ki": "23.5Gi",
		"1G":         "953.7Mi",
		"2Ti":        "2Ti",
	} {
		if got := Bytes(resource.MustParse(in)); got != want {
			t.Errorf("Bytes(%s) = %q, want %q", in, got, want)
		}
	}
}
