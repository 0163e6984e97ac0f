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

package agentauthorizer

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/vessel-vm/vessel/apiserver/agentidentity"
)

func TestAuthorize(t *testing.T) {
	z := New(agentidentity.Identifier{ServiceAccounts: []string{agentidentity.DefaultServiceAccount}})
	agent := &user.DefaultInfo{Name: "system:vessel-agent:hv1", Groups: []string{agentidentity.Group}}
	podAgent := &user.DefaultInfo{Name: "system:serviceaccount:vessel-system:vessel-agent", Extra: map[string][]string{agentidentity.NodeNameExtra: {"hv1"}}}
	impostor := &user.DefaultInfo{Name: "mallory", Groups: []string{agentidentity.Group}}
	admin := &user.DefaultInfo{Name: "admin", Groups: []string{"system:masters"}}

	request := func(u user.Info, verb, resource, subresource, selector string) authorizer.AttributesRecord {
		a := authorizer.AttributesRecord{
			User: u, Verb: verb, APIGroup: "vessel.dev", APIVersion: "v1alpha1",
			Resource: resource, Subresource: subresource, ResourceRequest: true,
		}
		if selector != "" {
			sel, err := fields.ParseSelector(selector)
			if err != nil {
				t.Fatal(err)
			}
			a.FieldSelectorRequirements = sel.Requirements()
		}
		return a
	}
	for _, tc := range []struct {
		name   string
		attrs  authorizer.AttributesRecord
		denied string // what the reason says; "" when there is no opinion
	}{
		{"agent watches its VMs", request(agent, "watch", "virtualmachines", "", "spec.nodeName=hv1"), ""},
		{"agent lists its running VMs", request(agent, "list", "virtualmachines", "", "status.phase=Running,spec.nodeName==hv1"), ""},
		{"pod-bound agent lists its VMs", request(podAgent, "list", "virtualmachines", "", "spec.nodeName=hv1"), ""},
		{"agent lists every VM", request(agent, "list", "virtualmachines", "", ""), "add the field selector spec.nodeName=hv1"},
		{"agent watches every VM", request(agent, "watch", "virtualmachines", "", ""), "may only watch VirtualMachines bound to its hypervisor"},
		{"agent lists another node's VMs", request(agent, "list", "virtualmachines", "", "spec.nodeName=hv2"), "spec.nodeName=hv1"},
		{"agent lists VMs not on its node", request(agent, "list", "virtualmachines", "", "spec.nodeName!=hv1"), "spec.nodeName=hv1"},
		{"agent lists unbound VMs", request(agent, "list", "virtualmachines", "", "spec.nodeName="), "spec.nodeName=hv1"},
		{"agent deletes VMs in bulk", request(agent, "deletecollection", "virtualmachines", "", "spec.nodeName=hv1"), "may not delete"},
		{"agent gets a VM", request(agent, "get", "virtualmachines", "", ""), ""},
		{"agent watches snapshots", request(agent, "watch", "virtualmachinesnapshots", "", ""), ""},
		{"agent group member with a foreign name", request(impostor, "get", "hypervisors", "", ""), "is not named system:vessel-agent:<hypervisor>"},
		{"admin lists every VM", request(admin, "list", "virtualmachines", "", ""), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decision, reason, err := z.Authorize(context.Background(), tc.attrs)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.denied == "" && decision != authorizer.DecisionNoOpinion:
				t.Errorf("decision %v (%s), want no opinion", decision, reason)
			case tc.denied != "" && (decision != authorizer.DecisionDeny || !strings.Contains(reason, tc.denied)):
				t.Errorf("decision %v (%s), want deny saying %q", decision, reason, tc.denied)
			}
		})
	}
}
