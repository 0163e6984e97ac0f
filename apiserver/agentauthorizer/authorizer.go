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

// Package agentauthorizer confines what node agents read, which admission
// never sees: an agent lists and watches only the VirtualMachines bound to
// its own Hypervisor, asking with the field selector spec.nodeName=<its
// hypervisor> (as the node authorizer does for kubelets and pods). It
// sits in front of the delegated authorizer: it only ever denies, and
// leaves everything else to RBAC.
package agentauthorizer

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apiserver/agentidentity"
)

// NodeNameField is the field selector an agent's VM list or watch must
// carry.
const NodeNameField = "spec.nodeName"

// New returns the authorizer. It answers Deny or NoOpinion, never Allow,
// and sets no conditions.
func New(identifier agentidentity.Identifier) authorizer.Authorizer {
	return authorizer.AuthorizerFunc(agentAuthorizer{identifier}.authorize)
}

// agentAuthorizer denies agents what they may not read.
type agentAuthorizer struct {
	identifier agentidentity.Identifier
}

func (z agentAuthorizer) authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if !a.IsResourceRequest() || a.GetAPIGroup() != vessel.GroupName {
		return authorizer.DecisionNoOpinion, "", nil
	}
	who := z.identifier.Identify(a.GetUser())
	switch {
	case !who.IsAgent:
		return authorizer.DecisionNoOpinion, "", nil
	case who.Hypervisor == "":
		return authorizer.DecisionDeny, who.Why, nil
	}
	if a.GetResource() != "virtualmachines" || a.GetSubresource() != "" {
		return authorizer.DecisionNoOpinion, "", nil
	}
	switch a.GetVerb() {
	case "list", "watch":
		if selectsNode(a, who.Hypervisor) {
			return authorizer.DecisionNoOpinion, "", nil
		}
		return authorizer.DecisionDeny, fmt.Sprintf("agent %s may only %s VirtualMachines bound to its hypervisor: add the field selector %s=%s",
			who.Hypervisor, a.GetVerb(), NodeNameField, who.Hypervisor), nil
	case "deletecollection":
		return authorizer.DecisionDeny, fmt.Sprintf("agent %s may not delete VirtualMachines", who.Hypervisor), nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

// selectsNode says the request's field selector requires spec.nodeName to
// be node: whatever else it asks, it can only match VMs bound there.
func selectsNode(a authorizer.Attributes, node string) bool {
	reqs, err := a.GetFieldSelector()
	if err != nil {
		return false
	}
	for _, r := range reqs {
		if r.Field == NodeNameField && (r.Operator == selection.Equals || r.Operator == selection.DoubleEquals) && r.Value == node {
			return true
		}
	}
	return false
}
