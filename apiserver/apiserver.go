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

// Package apiserver wires the vessel.dev API into a k8s.io/apiserver generic
// server: the scheme, the storage of every resource, admission, the
// controllers the server runs and its embedded etcd. Config -> Complete() ->
// New() builds a server; cmd/vessel-apiserver turns flags into a Config.
package apiserver

import (
	"context"
	"fmt"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	restclient "k8s.io/client-go/rest"

	metricsinstall "github.com/vessel-vm/vessel/apis/metrics/install"
	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/install"
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/apiserver/agentidentity"
	"github.com/vessel-vm/vessel/controller/agentcert"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	"github.com/vessel-vm/vessel/registry/vessel/clone"
	"github.com/vessel-vm/vessel/registry/vessel/hypervisor"
	"github.com/vessel-vm/vessel/registry/vessel/migration"
	"github.com/vessel-vm/vessel/registry/vessel/pool"
	"github.com/vessel-vm/vessel/registry/vessel/restore"
	"github.com/vessel-vm/vessel/registry/vessel/snapshot"
	"github.com/vessel-vm/vessel/registry/vessel/virtualmachine"
)

var (
	// Scheme knows every type the server serves.
	Scheme = runtime.NewScheme()
	// Codecs serializes them.
	Codecs = serializer.NewCodecFactory(Scheme)
	// ParameterCodec decodes query parameters, including the console's.
	ParameterCodec = runtime.NewParameterCodec(Scheme)
)

func init() {
	install.Install(Scheme)
	metricsinstall.Install(Scheme)
	// The generic server decodes options (ListOptions, ...) as unversioned v1.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	Scheme.AddUnversionedTypes(unversioned,
		&metav1.Status{},
		&metav1.APIVersions{},
		&metav1.APIGroupList{},
		&metav1.APIGroup{},
		&metav1.APIResourceList{},
	)
	// A pool's scale subresource speaks autoscaling/v1 Scale. The generic
	// server converts through the internal version of a kind's group, so
	// the same Go type stands for both: nothing to convert.
	Scheme.AddKnownTypes(autoscalingv1.SchemeGroupVersion, &autoscalingv1.Scale{})
	Scheme.AddKnownTypeWithName(schema.GroupVersion{Group: autoscalingv1.GroupName, Version: runtime.APIVersionInternal}.WithKind("Scale"), &autoscalingv1.Scale{})
	metav1.AddToGroupVersion(Scheme, autoscalingv1.SchemeGroupVersion)
}

// ExtraConfig is what Vessel adds to the generic server's configuration.
type ExtraConfig struct {
	// Validation carries the allowed host path roots.
	Validation validation.Options
	// CoreClientConfig reaches kube-apiserver (for leader election); nil
	// when the server runs standalone. NewConfig sets it.
	CoreClientConfig *restclient.Config
	// AdmissionInformers feed the admission plugins; started after the
	// server is up. Nil when admission is off. NewConfig sets it.
	AdmissionInformers informers.SharedInformerFactory
	// DisableControllers serves the API without running the scheduler and
	// the heartbeat monitor.
	DisableControllers bool
	// AgentTransports are mutual TLS toward node agents' stream servers,
	// one per hypervisor; nil disables console and log, and leaves
	// metrics.vessel.dev empty.
	AgentTransports *AgentTransports
	// AgentIdentity says which users are node agents. NewConfig puts an
	// authorizer in front of the delegated one that confines what agents
	// read, and hands it to the admission plugins.
	AgentIdentity agentidentity.Identifier
	// AgentSigner, with a core client, approves and signs agents' serving
	// certificate requests (controller/agentcert); nil leaves them alone.
	AgentSigner *agentcert.Signer
	// UsageResolution is how often agents are read for the VMs' usage
	// (metrics.vessel.dev); zero is usage.DefaultResolution.
	UsageResolution time.Duration
	// ControllersElection times the Lease that lets one replica at a time
	// run the controllers; zero values are DefaultControllersElection's.
	ControllersElection ElectionTimes
}

// Config is the whole server configuration.
type Config struct {
	GenericConfig *genericapiserver.RecommendedConfig
	ExtraConfig   ExtraConfig
}

// CompletedConfig is a Config with defaults filled in.
type CompletedConfig struct {
	GenericConfig genericapiserver.CompletedConfig
	ExtraConfig   *ExtraConfig
}

// Server is a running vessel-apiserver.
type Server struct {
	GenericAPIServer *genericapiserver.GenericAPIServer
}

// Complete fills in defaults.
func (c *Config) Complete() CompletedConfig {
	return CompletedConfig{GenericConfig: c.GenericConfig.Complete(), ExtraConfig: &c.ExtraConfig}
}

// New builds the server and installs the vessel.dev API group.
func (c CompletedConfig) New() (*Server, error) {
	generic, err := c.GenericConfig.New("vessel-apiserver", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, fmt.Errorf("create generic server: %w", err)
	}
	storage, err := c.storage()
	if err != nil {
		return nil, err
	}
	group := genericapiserver.NewDefaultAPIGroupInfo(vessel.GroupName, Scheme, ParameterCodec, Codecs)
	group.VersionedResourcesStorageMap[v1alpha1.SchemeGroupVersion.Version] = storage
	if err := generic.InstallAPIGroup(&group); err != nil {
		return nil, fmt.Errorf("install API group %s: %w", vessel.GroupName, err)
	}
	if err := c.installMetricsAPI(generic, storage["virtualmachines"]); err != nil {
		return nil, err
	}
	if f := c.ExtraConfig.AdmissionInformers; f != nil {
		err := generic.AddPostStartHook("start-vessel-admission-informers", func(hook genericapiserver.PostStartHookContext) error {
			f.Start(hook.Done())
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if !c.ExtraConfig.DisableControllers {
		if err := generic.AddPostStartHook("start-vessel-controllers", controllersHook(c.ExtraConfig.CoreClientConfig, c.ExtraConfig.AdmissionInformers, c.ExtraConfig.ControllersElection, c.ExtraConfig.AgentIdentity, c.ExtraConfig.AgentSigner)); err != nil {
			return nil, err
		}
	}
	return &Server{GenericAPIServer: generic}, nil
}

// storage maps every resource and subresource path to its REST endpoint.
func (c CompletedConfig) storage() (map[string]rest.Storage, error) {
	optsGetter := c.GenericConfig.RESTOptionsGetter
	hypervisors, err := hypervisor.NewStorage(Scheme, optsGetter)
	if err != nil {
		return nil, err
	}
	agents := virtualmachine.Agents{Hypervisors: hypervisors.Main, Disabled: agentClientDisabled}
	if c.ExtraConfig.AgentTransports != nil {
		agents.Transports = c.ExtraConfig.AgentTransports
	}
	identifier := c.ExtraConfig.AgentIdentity
	guards := virtualmachine.Guards{
		AgentOf: func(u user.Info) (string, bool) {
			who := identifier.Identify(u)
			return who.Hypervisor, who.IsAgent
		},
		Authorizer: c.GenericConfig.Authorization.Authorizer,
	}
	if core := c.ExtraConfig.CoreClientConfig; core != nil {
		client, err := kubernetes.NewForConfig(core)
		if err != nil {
			return nil, fmt.Errorf("create core client for user data Secrets: %w", err)
		}
		guards.SecretData = func(ctx context.Context, namespace, name string) (map[string][]byte, error) {
			secret, err := client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return secret.Data, nil
		}
	}
	vms, err := virtualmachine.NewStorage(Scheme, optsGetter, c.ExtraConfig.Validation, agents, guards)
	if err != nil {
		return nil, err
	}
	snapshots, err := snapshot.NewStorage(Scheme, optsGetter, vms.VirtualMachine)
	if err != nil {
		return nil, err
	}
	restores, err := restore.NewStorage(Scheme, optsGetter, vms.VirtualMachine, snapshots.Main)
	if err != nil {
		return nil, err
	}
	clones, err := clone.NewStorage(Scheme, optsGetter, vms.VirtualMachine, snapshots.Main, c.GenericConfig.Authorization.Authorizer)
	if err != nil {
		return nil, err
	}
	migrations, err := migration.NewStorage(Scheme, optsGetter, vms.VirtualMachine, snapshots.Main)
	if err != nil {
		return nil, err
	}
	vms.Binding.Migrations = migrations.Main
	pools, err := pool.NewStorage(Scheme, optsGetter, c.ExtraConfig.Validation)
	if err != nil {
		return nil, err
	}
	m := map[string]rest.Storage{
		"virtualmachines":                 vms.VirtualMachine,
		"virtualmachines/status":          vms.Status,
		"virtualmachines/binding":         vms.Binding,
		"virtualmachines/console":         vms.Console,
		"virtualmachines/portforward":     vms.PortForward,
		"virtualmachines/log":             vms.Log,
		"virtualmachines/userdata":        vms.UserData,
		"virtualmachinesnapshots":         snapshots.Main,
		"virtualmachinesnapshots/status":  snapshots.Status,
		"virtualmachinerestores":          restores.Main,
		"virtualmachinerestores/status":   restores.Status,
		"hypervisors":                     hypervisors.Main,
		"hypervisors/status":              hypervisors.Status,
		"virtualmachineclones":            clones.Clone,
		"virtualmachineclones/status":     clones.Status,
		"virtualmachinemigrations":        migrations.Main,
		"virtualmachinemigrations/status": migrations.Status,
		"virtualmachinepools":             pools.Pool,
		"virtualmachinepools/status":      pools.Status,
		"virtualmachinepools/scale":       pools.Scale,
	}
	for action, endpoint := range vms.Actions {
		m["virtualmachines/"+string(action)] = endpoint
	}
	return m, nil
}
