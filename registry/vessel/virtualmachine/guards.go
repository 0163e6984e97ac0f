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

package virtualmachine

import "k8s.io/apiserver/pkg/authorization/authorizer"

// Guards are what VM storage needs, besides its store, to confine who does
// what: which users are node agents (they read only their own VMs and
// their user data), the server's authorizer, asked whether a console user
// may type, and how user data Secrets are read.
type Guards struct {
	// AgentOf tells node agents apart; nil treats no user as one.
	AgentOf AgentOf
	// Authorizer decides whether a console opened with GET may send
	// input; nil lets every console do so.
	Authorizer authorizer.Authorizer
	// SecretData reads user data Secrets; nil (no kube-apiserver) makes
	// the userdata of a VM with userDataSecretRef a 503.
	SecretData SecretData
}
