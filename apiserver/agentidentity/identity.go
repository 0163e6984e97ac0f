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

// Package agentidentity says which authenticated users are node agents, and
// the agent of which Hypervisor each is. Admission, authorization and the
// userdata subresource all ask it, so that every check agrees on who an
// agent is.
package agentidentity

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
)

const (
	// Group is the group every agent with a client certificate is in.
	Group = "system:vessel-agents"
	// UserPrefix precedes the hypervisor name in such an agent's user name.
	UserPrefix = "system:vessel-agent:"
	// NodeNameExtra is the user extra kube-apiserver sets from a
	// service account token bound to a pod: the name of the node the pod
	// runs on. An agent of a DaemonSet is the agent of that node.
	NodeNameExtra = "authentication.kubernetes.io/node-name"
	// DefaultServiceAccount is the agents' service account in
	// manifests/cluster.
	DefaultServiceAccount = "vessel-system:vessel-agent"
)

// Identifier recognizes agents: users named system:vessel-agent:<hypervisor>
// in group system:vessel-agents (client certificates, one per node), and
// the agents' service accounts when their token is bound to a pod on a
// node (the Hypervisor is named after the node).
type Identifier struct {
	// ServiceAccounts are the agents' service accounts, as
	// "<namespace>:<name>".
	ServiceAccounts []string
}

// Agent is what a request's user is, for Vessel.
type Agent struct {
	// IsAgent is true for a user who authenticated as a node agent.
	IsAgent bool
	// Hypervisor is the one the agent runs. It is empty for a user who
	// is an agent by group or service account but names no hypervisor
	// (a certificate with another name, a service account token not bound
	// to a pod): such a user may do nothing an agent may.
	Hypervisor string
	// Why says why Hypervisor is empty.
	Why string
}

// Identify returns what u is.
func (i Identifier) Identify(u user.Info) Agent {
	if u == nil {
		return Agent{}
	}
	if slices.Contains(u.GetGroups(), Group) {
		name, ok := strings.CutPrefix(u.GetName(), UserPrefix)
		if !ok || name == "" {
			return Agent{IsAgent: true, Why: fmt.Sprintf("user %q is in group %s but is not named %s<hypervisor>", u.GetName(), Group, UserPrefix)}
		}
		return Agent{IsAgent: true, Hypervisor: name}
	}
	namespace, name, err := serviceaccount.SplitUsername(u.GetName())
	if err != nil || !slices.Contains(i.ServiceAccounts, namespace+":"+name) {
		return Agent{}
	}
	nodes := u.GetExtra()[NodeNameExtra]
	if len(nodes) != 1 || nodes[0] == "" {
		return Agent{IsAgent: true, Why: fmt.Sprintf("service account %s:%s is an agent only with a token bound to a pod on a node (%s), as a DaemonSet's pods get", namespace, name, NodeNameExtra)}
	}
	return Agent{IsAgent: true, Hypervisor: nodes[0]}
}

// ValidateServiceAccounts checks the "<namespace>:<name>" form.
func ValidateServiceAccounts(accounts []string) []error {
	var errs []error
	for _, a := range accounts {
		namespace, name, ok := strings.Cut(a, ":")
		if !ok || namespace == "" || name == "" || strings.Contains(name, ":") {
			errs = append(errs, fmt.Errorf("--agent-service-accounts: %q is not <namespace>:<name>", a))
		}
	}
	return errs
}
