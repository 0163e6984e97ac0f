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

package apiserver

import (
	"fmt"
	"net"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/resourcequota"
	"k8s.io/apiserver/pkg/authorization/union"
	"k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	basecompatibility "k8s.io/component-base/compatibility"
	baseversion "k8s.io/component-base/version"
	netutils "k8s.io/utils/net"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apiserver/admission/agentrestriction"
	"github.com/vessel-vm/vessel/apiserver/admission/hypervisorcapacity"
	vesselinitializer "github.com/vessel-vm/vessel/apiserver/admission/initializer"
	"github.com/vessel-vm/vessel/apiserver/agentauthorizer"
	"github.com/vessel-vm/vessel/apiserver/agentidentity"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	generatedopenapi "github.com/vessel-vm/vessel/generated/openapi"
)

// EtcdPathPrefix is where Vessel keeps its objects in etcd. It is permanent
// once shipped.
const EtcdPathPrefix = "/registry/vessel.dev"

// DefaultAllowedHostPathRoots is where hostPath disk sources may lie unless
// the server is told otherwise: the host's image directory.
func DefaultAllowedHostPathRoots() []string { return []string{"/var/lib/vessel/images"} }

// NewRecommendedOptions returns the generic server's options set up for
// Vessel's storage: objects under EtcdPathPrefix, encoded as v1alpha1, and a
// generated serving certificate kept in memory unless a directory is named.
func NewRecommendedOptions() *genericoptions.RecommendedOptions {
	o := genericoptions.NewRecommendedOptions(EtcdPathPrefix, Codecs.LegacyCodec(v1alpha1.SchemeGroupVersion))
	o.Etcd.StorageConfig.EncodeVersioner = runtime.NewMultiGroupVersioner(
		v1alpha1.SchemeGroupVersion, schema.GroupKind{Group: v1alpha1.GroupName})
	o.SecureServing.ServerCert.CertDirectory = ""
	return o
}

// NewConfig applies the generic server's options and returns the whole
// server configuration. It fills in extra's CoreClientConfig and
// AdmissionInformers from what the options set up; the caller sets the
// rest. It does not start etcd: the options must name a reachable one.
func NewConfig(recommended *genericoptions.RecommendedOptions, extra ExtraConfig) (*Config, error) {
	if err := recommended.SecureServing.MaybeDefaultWithSelfSignedCerts(
		"localhost", nil, []net.IP{netutils.ParseIPSloppy("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("create self-signed serving certificate: %w", err)
	}
	serverConfig := genericapiserver.NewRecommendedConfig(Codecs)
	namer := openapi.NewDefinitionNamer(Scheme)
	serverConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(generatedopenapi.GetOpenAPIDefinitions, namer)
	serverConfig.OpenAPIConfig.Info.Title = "Vessel"
	serverConfig.OpenAPIConfig.Info.Version = v1alpha1.SchemeGroupVersion.Version
	serverConfig.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(generatedopenapi.GetOpenAPIDefinitions, namer)
	serverConfig.OpenAPIV3Config.Info.Title = "Vessel"
	serverConfig.OpenAPIV3Config.Info.Version = v1alpha1.SchemeGroupVersion.Version
	serverConfig.FeatureGate = utilfeature.DefaultFeatureGate
	serverConfig.EffectiveVersion = basecompatibility.NewEffectiveVersionFromString(baseversion.DefaultKubeBinaryVersion, "", "")
	// A console session lasts as long as the user keeps it: no request
	// timeout, and it holds no in-flight or priority-and-fairness seat.
	serverConfig.LongRunningFunc = genericfilters.BasicLongRunningRequestCheck(
		sets.NewString("watch", "proxy"), sets.NewString("console", "portforward"))

	var admissionInformers informers.SharedInformerFactory
	recommended.ExtraAdmissionInitializers = func(c *genericapiserver.RecommendedConfig) ([]admission.PluginInitializer, error) {
		client, err := versioned.NewForConfig(c.LoopbackClientConfig)
		if err != nil {
			return nil, err
		}
		admissionInformers = informers.NewSharedInformerFactory(client, 10*time.Minute)
		return []admission.PluginInitializer{vesselinitializer.New(admissionInformers, extra.AgentIdentity)}, nil
	}
	if err := recommended.ApplyTo(serverConfig); err != nil {
		return nil, fmt.Errorf("apply options: %w", err)
	}
	if err := confineAgents(serverConfig, extra.AgentIdentity); err != nil {
		return nil, err
	}
	waitForFrontProxyCA(serverConfig)
	extra.CoreClientConfig = serverConfig.ClientConfig
	extra.AdmissionInformers = admissionInformers
	return &Config{GenericConfig: serverConfig, ExtraConfig: extra}, nil
}

// RegisterAdmissionPlugins adds Vessel's admission plugins to the generic
// server's, enabled by default after the recommended ones, and the
// standard ResourceQuota plugin last, as in kube-apiserver: it charges what
// every other plugin let through.
func RegisterAdmissionPlugins(admission *genericoptions.AdmissionOptions) {
	agentrestriction.Register(admission.Plugins)
	hypervisorcapacity.Register(admission.Plugins)
	resourcequota.Register(admission.Plugins)
	admission.RecommendedPluginOrder = append(admission.RecommendedPluginOrder,
		agentrestriction.PluginName, hypervisorcapacity.PluginName, resourcequota.PluginName)
}

// confineAgents puts the agent authorizer in front of the configured one:
// it denies agents the VM lists and watches they may not make, and has no
// opinion on anything else.
func confineAgents(config *genericapiserver.RecommendedConfig, agents agentidentity.Identifier) error {
	if config.Authorization.Authorizer == nil {
		return nil
	}
	authz, err := union.New(
		union.NamedAuthorizer{AuthorizerName: "vessel-agents", Authorizer: agentauthorizer.New(agents)},
		union.NamedAuthorizer{AuthorizerName: "delegated", Authorizer: config.Authorization.Authorizer},
	)
	if err != nil {
		return fmt.Errorf("build the authorizer chain: %w", err)
	}
	config.Authorization.Authorizer = authz
	return nil
}
