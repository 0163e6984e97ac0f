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

package agentidentity

import (
	"testing"

	"k8s.io/apiserver/pkg/authentication/user"
)

func TestIdentify(t *testing.T) {
	id := Identifier{ServiceAccounts: []string{DefaultServiceAccount}}
	sa := "system:serviceaccount:vessel-system:vessel-agent"
	for _, tc := range []struct {
		name       string
		user       user.Info
		isAgent    bool
		hypervisor string
	}{
		{"certificate of an agent", &user.DefaultInfo{Name: "system:vessel-agent:hv1", Groups: []string{Group}}, true, "hv1"},
		{"agent group, another name", &user.DefaultInfo{Name: "mallory", Groups: []string{Group}}, true, ""},
		{"agent group, no hypervisor in the name", &user.DefaultInfo{Name: UserPrefix, Groups: []string{Group}}, true, ""},
		{"agent name outside the group", &user.DefaultInfo{Name: "system:vessel-agent:hv1"}, false, ""},
		{"pod-bound token on node n1", &user.DefaultInfo{Name: sa, Extra: map[string][]string{NodeNameExtra: {"n1"}}}, true, "n1"},
		{"token not bound to a pod", &user.DefaultInfo{Name: sa}, true, ""},
		{"two node names", &user.DefaultInfo{Name: sa, Extra: map[string][]string{NodeNameExtra: {"n1", "n2"}}}, true, ""},
		{"another service account on a node", &user.DefaultInfo{Name: "system:serviceaccount:team-a:default", Extra: map[string][]string{NodeNameExtra: {"n1"}}}, false, ""},
		{"a tenant", &user.DefaultInfo{Name: "alice"}, false, ""},
		{"nobody", nil, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := id.Identify(tc.user)
			if got.IsAgent != tc.isAgent || got.Hypervisor != tc.hypervisor {
				t.Errorf("Identify = %+v, want agent %v of %q", got, tc.isAgent, tc.hypervisor)
			}
			if got.IsAgent && got.Hypervisor == "" && got.Why == "" {
				t.Error("an agent without a hypervisor is not told why")
			}
		})
	}
}

func TestValidateServiceAccounts(t *testing.T) {
	if errs := ValidateServiceAccounts([]string{"vessel-system:vessel-agent"}); len(errs) != 0 {
		t.Errorf("valid account refused: %v", errs)
	}
	for _, bad := range []string{"vessel-agent", ":x", "x:", "a:b:c"} {
		if errs := ValidateServiceAccounts([]string{bad}); len(errs) != 1 {
			t.Errorf("%q: %v, want one error", bad, errs)
		}
	}
}
