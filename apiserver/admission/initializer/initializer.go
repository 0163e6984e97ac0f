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

// Package initializer hands Vessel's admission plugins what they need
// besides the generic server's: informers of vessel.dev objects, who the
// node agents are, and to the ResourceQuota plugin the evaluators of
// Vessel's resources.
package initializer

import (
	"k8s.io/apiserver/pkg/admission"
	genericinitializer "k8s.io/apiserver/pkg/admission/initializer"

	"github.com/vessel-vm/vessel/apiserver/agentidentity"
	"github.com/vessel-vm/vessel/controller/quota"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
)

// WantsVesselInformerFactory is implemented by plugins that read
// vessel.dev objects.
type WantsVesselInformerFactory interface {
	SetVesselInformerFactory(informers.SharedInformerFactory)
}

// WantsAgentIdentifier is implemented by plugins that tell agents apart.
type WantsAgentIdentifier interface {
	SetAgentIdentifier(agentidentity.Identifier)
}

// New returns the initializer.
func New(f informers.SharedInformerFactory, agents agentidentity.Identifier) admission.PluginInitializer {
	return pluginInitializer{informers: f, agents: agents}
}

type pluginInitializer struct {
	informers informers.SharedInformerFactory
	agents    agentidentity.Identifier
}

func (i pluginInitializer) Initialize(plugin admission.Interface) {
	if wants, ok := plugin.(WantsVesselInformerFactory); ok {
		wants.SetVesselInformerFactory(i.informers)
	}
	if wants, ok := plugin.(WantsAgentIdentifier); ok {
		wants.SetAgentIdentifier(i.agents)
	}
	// Admission only charges what it admits: the evaluators need no
	// listers (the quota controller recounts with its own).
	if wants, ok := plugin.(genericinitializer.WantsQuotaConfiguration); ok {
		wants.SetQuotaConfiguration(quota.NewConfiguration(quota.Listers{}))
	}
}
