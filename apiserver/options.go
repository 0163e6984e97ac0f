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
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	basecompatibility "k8s.io/component-base/compatibility"
	baseversion "k8s.io/component-base/version"
	netutils "k8s.io/utils/net"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/apiserver/admission/agentrestriction"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	generatedopenapi "github.com/vessel-vm/vessel/generated/openapi"
)

// EtcdPathPrefix is where Vessel keeps its objects in etcd. It is permanent
// once shipped.
const EtcdPathPrefix = "/registry/vessel.dev"

// Options are the vessel-apiserver's command-line options: the generic
// server's recommended options plus embedded etcd and host path policy.
type Options struct {
	RecommendedOptions *genericoptions.RecommendedOptions

	// EtcdDataDir is the embedded etcd's data directory, used when no
	// --etcd-servers are given.
	EtcdDataDir string
	// EtcdListen is the embedded etcd's client URL.
	EtcdListen string
	// AllowedHostPathRoots are the shared hostPath roots, read-only to VMs.
	AllowedHostPathRoots []string
	// WritableHostPathRoots are hostPath roots divided per namespace.
	WritableHostPathRoots []string
	// AgentClient reaches node agents' stream servers for console and log.
	AgentClient AgentClientOptions
	// DisableControllers keeps the scheduler and the heartbeat monitor from
	// running in this process. It is not a flag: only embedders set it, such
	// as tests of the API alone, which must not race a scheduler.
	DisableControllers bool
}

// NewOptions returns options with Vessel's defaults.
func NewOptions() *Options {
	o := &Options{
		RecommendedOptions: genericoptions.NewRecommendedOptions(
			EtcdPathPrefix,
			Codecs.LegacyCodec(v1alpha1.SchemeGroupVersion),
		),
		EtcdDataDir:          "/var/lib/vessel/etcd",
		EtcdListen:           "http://127.0.0.1:0",
		AllowedHostPathRoots: []string{"/var/lib/vessel/images"},
	}
	o.RecommendedOptions.Etcd.StorageConfig.EncodeVersioner = runtime.NewMultiGroupVersioner(
		v1alpha1.SchemeGroupVersion, schema.GroupKind{Group: v1alpha1.GroupName})
	// A generated serving certificate stays in memory unless a directory is named.
	o.RecommendedOptions.SecureServing.ServerCert.CertDirectory = ""
	return o
}

// AddFlags registers every option on fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.RecommendedOptions.AddFlags(fs)
	fs.StringVar(&o.EtcdDataDir, "etcd-data-dir", o.EtcdDataDir,
		"Data directory of the embedded etcd, started when --etcd-servers is empty.")
	fs.StringVar(&o.EtcdListen, "embedded-etcd-listen", o.EtcdListen,
		"Client URL of the embedded etcd (port 0 picks a free port).")
	fs.StringSliceVar(&o.AllowedHostPathRoots, "allowed-host-path-roots", o.AllowedHostPathRoots,
		"Shared directories under which hostPath sources may lie: VMs may read files there (kernels, initrds, readOnly disks), never write them. Keep in line with the agents' flag.")
	fs.StringSliceVar(&o.WritableHostPathRoots, "writable-host-path-roots", o.WritableHostPathRoots,
		"Directories divided per namespace: a VM may use files under <root>/<its namespace>/, writable or not. Keep in line with the agents' flag.")
	fs.StringVar(&o.AgentClient.CAFile, "agent-ca-file", o.AgentClient.CAFile,
		"CA bundle that verifies node agents' stream server certificates (console, log). Without the three --agent-* files, console and log answer 503.")
	fs.StringVar(&o.AgentClient.CertFile, "agent-client-cert-file", o.AgentClient.CertFile,
		"Client certificate presented to node agents' stream servers (its CN must be one the agents allow, vessel-apiserver by default).")
	fs.StringVar(&o.AgentClient.KeyFile, "agent-client-key-file", o.AgentClient.KeyFile,
		"Private key of --agent-client-cert-file.")
}

// embeddedEtcd is true when no external etcd is configured.
func (o *Options) embeddedEtcd() bool {
	return len(o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList) == 0
}

// Complete fills in derived values and registers Vessel's admission plugins.
func (o *Options) Complete() error {
	for _, roots := range [][]string{o.AllowedHostPathRoots, o.WritableHostPathRoots} {
		for i, root := range roots {
			roots[i] = filepath.Clean(root)
		}
	}
	if admission := o.RecommendedOptions.Admission; admission != nil {
		agentrestriction.Register(admission.Plugins)
		admission.RecommendedPluginOrder = append(admission.RecommendedPluginOrder, agentrestriction.PluginName)
	}
	return nil
}

// Validate checks the options; with embedded etcd, --etcd-servers may be empty.
func (o *Options) Validate() error {
	recommended := *o.RecommendedOptions
	if o.embeddedEtcd() {
		etcd := *recommended.Etcd
		etcd.StorageConfig.Transport.ServerList = []string{o.EtcdListen}
		recommended.Etcd = &etcd
	}
	errs := recommended.Validate()
	errs = append(errs, validation.ValidateHostPathRoots(o.AllowedHostPathRoots, o.WritableHostPathRoots)...)
	errs = append(errs, o.AgentClient.validate()...)
	if o.embeddedEtcd() && o.EtcdDataDir == "" {
		errs = append(errs, fmt.Errorf("--etcd-data-dir is required when --etcd-servers is empty"))
	}
	return utilerrors.NewAggregate(errs)
}

// Config builds the server configuration. It does not start etcd.
func (o *Options) Config() (*Config, error) {
	if err := o.RecommendedOptions.SecureServing.MaybeDefaultWithSelfSignedCerts(
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
		sets.NewString("watch", "proxy"), sets.NewString("console"))
	agentTransport, err := o.AgentClient.transport()
	if err != nil {
		return nil, err
	}

	var admissionInformers informers.SharedInformerFactory
	o.RecommendedOptions.ExtraAdmissionInitializers = func(c *genericapiserver.RecommendedConfig) ([]admission.PluginInitializer, error) {
		client, err := versioned.NewForConfig(c.LoopbackClientConfig)
		if err != nil {
			return nil, err
		}
		admissionInformers = informers.NewSharedInformerFactory(client, 10*time.Minute)
		return []admission.PluginInitializer{admissionInitializer{admissionInformers}}, nil
	}
	if err := o.RecommendedOptions.ApplyTo(serverConfig); err != nil {
		return nil, fmt.Errorf("apply options: %w", err)
	}
	waitForFrontProxyCA(serverConfig)
	return &Config{
		GenericConfig: serverConfig,
		ExtraConfig: ExtraConfig{
			Validation:         validation.Options{AllowedHostPathRoots: o.AllowedHostPathRoots, WritableHostPathRoots: o.WritableHostPathRoots},
			CoreClientConfig:   serverConfig.ClientConfig,
			AdmissionInformers: admissionInformers,
			DisableControllers: o.DisableControllers,
			AgentTransport:     agentTransport,
		},
	}, nil
}

// NewServer starts the embedded etcd when needed and builds the server. The
// returned stop function closes etcd; call it after the server has stopped.
func (o *Options) NewServer() (*Server, func(), error) {
	stop := func() {}
	if o.embeddedEtcd() {
		etcd, err := StartEmbeddedEtcd(o.EtcdDataDir, o.EtcdListen)
		if err != nil {
			return nil, nil, err
		}
		o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList = []string{etcd.ClientURL()}
		stop = etcd.Close
	}
	config, err := o.Config()
	if err != nil {
		stop()
		return nil, nil, err
	}
	server, err := config.Complete().New()
	if err != nil {
		stop()
		return nil, nil, err
	}
	return server, stop, nil
}

// Run serves until ctx is done, then drains in-flight requests before
// closing etcd, so no acknowledged write is lost.
func (o *Options) Run(ctx context.Context) error {
	server, stop, err := o.NewServer()
	if err != nil {
		return err
	}
	defer stop()
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}

// admissionInitializer hands Vessel's plugins the informers they read.
type admissionInitializer struct {
	informers informers.SharedInformerFactory
}

func (i admissionInitializer) Initialize(plugin admission.Interface) {
	if wants, ok := plugin.(agentrestriction.WantsInformerFactory); ok {
		wants.SetVesselInformerFactory(i.informers)
	}
}
