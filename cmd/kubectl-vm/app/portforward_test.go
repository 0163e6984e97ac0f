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

package app

import (
	"errors"
	"testing"
)

func TestExplainForward(t *testing.T) {
	tgt := &target{Namespace: "team-b", Name: "web"}
	for _, tt := range []struct{ in, want string }{
		{
			"error upgrading connection: unable to upgrade connection: virtualmachines.vessel.dev \"web\" is forbidden: User \"bob\" cannot create resource",
			"you are not allowed to forward ports of VM team-b/web: virtualmachines.vessel.dev \"web\" is forbidden: User \"bob\" cannot create resource",
		},
		{
			"error upgrading connection: unable to upgrade connection: VM team-b/web is not running (phase Stopped)",
			"forward ports of VM team-b/web: VM team-b/web is not running (phase Stopped)",
		},
		{"lost connection to pod", "forward ports of VM team-b/web: lost connection to pod"},
	} {
		if got := explainForward(errors.New(tt.in), tgt).Error(); got != tt.want {
			t.Errorf("explainForward(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}
