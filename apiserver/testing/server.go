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

// Package testing starts a real vessel-apiserver in-process, with its
// embedded etcd in a temporary directory, for integration tests and
// benchmarks. Authentication and authorization are the server's own
// loopback identity (system:masters): delegation to kube-apiserver is
// exercised by the e2e suite instead.
package testing

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	restclient "k8s.io/client-go/rest"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
	"github.com/vessel-vm/vessel/apiserver"
	"github.com/vessel-vm/vessel/apiserver/agentidentity"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
)

// TestServer is a running in-process vessel-apiserver.
type TestServer struct {
	// ClientConfig reaches the server as a cluster admin.
	ClientConfig *restclient.Config
	// Client is the generated typed clientset on ClientConfig.
	Client versioned.Interface
	// EtcdDataDir is the embedded etcd's data directory.
	EtcdDataDir string
}

// Options tune a test server.
type Options struct {
	// AllowedHostPathRoots overrides the server's default (shared) roots.
	AllowedHostPathRoots []string
	// WritableHostPathRoots are the per-namespace roots (default none).
	WritableHostPathRoots []string
	// AllowedBridges are the host bridges VMs may connect to (default none).
	AllowedBridges []string
	// DisableControllers serves the API alone: no scheduler binds VMs and
	// no heartbeat monitor writes hypervisor conditions behind the test's
	// back.
	DisableControllers bool
	// AgentClient lets console and log reach node agents; without it they
	// answer 503.
	AgentClient apiserver.AgentClientOptions
	// Storage, when set, serves the vessel.dev/v1alpha1 resources from
	// what it returns instead of Vessel's registry, and no controllers
	// run: benchmarks measure a baseline with it.
	Storage func(generic.RESTOptionsGetter) (map[string]rest.Storage, error)
}

// Start runs a server until tb ends. It fails tb if the server does not
// become healthy.
func Start(tb testing.TB, opts Options) *TestServer {
	tb.Helper()
	s, stop, err := start(opts, tb.TempDir())
	if err != nil {
		tb.Fatalf("start vessel-apiserver: %v", err)
	}
	tb.Cleanup(stop)
	return s
}

func start(opts Options, dir string) (*TestServer, func(), error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("listen: %w", err)
	}
	etcd, err := apiserver.StartEmbeddedEtcd(dir, "http://127.0.0.1:0")
	if err != nil {
		listener.Close()
		return nil, nil, err
	}
	server, err := newServer(opts, listener, etcd.ClientURL())
	if err != nil {
		listener.Close()
		etcd.Close()
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.PrepareRun().RunWithContext(ctx) }()
	stop := func() {
		cancel()
		<-done
		etcd.Close()
	}

	cfg := restclient.CopyConfig(server.LoopbackClientConfig)
	cfg.QPS, cfg.Burst = -1, -1 // no client-side throttling in tests and benchmarks
	if err := waitHealthy(ctx, cfg, done); err != nil {
		stop()
		return nil, nil, err
	}
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		stop()
		return nil, nil, err
	}
	return &TestServer{ClientConfig: cfg, Client: client, EtcdDataDir: dir}, stop, nil
}

// newServer builds the server through apiserver.NewConfig, as the
// vessel-apiserver command does, on listener and the etcd at etcdURL. There
// is no kube-apiserver here: no delegated authn/authz, core informers or
// webhook admission.
func newServer(opts Options, listener net.Listener, etcdURL string) (*genericapiserver.GenericAPIServer, error) {
	ro := apiserver.NewRecommendedOptions()
	ro.Etcd.StorageConfig.Transport.ServerList = []string{etcdURL}
	ro.SecureServing.Listener = listener
	ro.SecureServing.BindPort = listener.Addr().(*net.TCPAddr).Port
	ro.SecureServing.BindAddress = net.ParseIP("127.0.0.1")
	ro.Authentication.RemoteKubeConfigFileOptional = true
	ro.Authorization.RemoteKubeConfigFileOptional = true
	ro.CoreAPI = nil
	ro.Admission = nil
	ro.Features.EnablePriorityAndFairness = false
	if errs := ro.Validate(); len(errs) > 0 {
		return nil, utilerrors.NewAggregate(errs)
	}
	roots := apiserver.DefaultAllowedHostPathRoots()
	if opts.AllowedHostPathRoots != nil {
		roots = nil
		for _, root := range opts.AllowedHostPathRoots {
			roots = append(roots, filepath.Clean(root))
		}
	}
	agentTransports, err := opts.AgentClient.Transports()
	if err != nil {
		return nil, err
	}
	config, err := apiserver.NewConfig(ro, apiserver.ExtraConfig{
		Validation:         validation.Options{AllowedHostPathRoots: roots, WritableHostPathRoots: opts.WritableHostPathRoots, AllowedBridges: opts.AllowedBridges},
		DisableControllers: opts.DisableControllers,
		AgentTransports:    agentTransports,
		AgentIdentity:      agentidentity.Identifier{ServiceAccounts: []string{agentidentity.DefaultServiceAccount}},
	})
	if err != nil {
		return nil, err
	}
	completed := config.Complete()
	if opts.Storage != nil {
		return newServerWithStorage(completed, opts.Storage)
	}
	server, err := completed.New()
	if err != nil {
		return nil, err
	}
	return server.GenericAPIServer, nil
}

// newServerWithStorage is CompletedConfig.New with the given storage in
// place of Vessel's and without its post-start hooks.
func newServerWithStorage(c apiserver.CompletedConfig, newStorage func(generic.RESTOptionsGetter) (map[string]rest.Storage, error)) (*genericapiserver.GenericAPIServer, error) {
	server, err := c.GenericConfig.New("vessel-apiserver", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, fmt.Errorf("create generic server: %w", err)
	}
	storage, err := newStorage(c.GenericConfig.RESTOptionsGetter)
	if err != nil {
		return nil, err
	}
	group := genericapiserver.NewDefaultAPIGroupInfo(vessel.GroupName, apiserver.Scheme, apiserver.ParameterCodec, apiserver.Codecs)
	group.VersionedResourcesStorageMap[v1alpha1.SchemeGroupVersion.Version] = storage
	if err := server.InstallAPIGroup(&group); err != nil {
		return nil, fmt.Errorf("install API group %s: %w", vessel.GroupName, err)
	}
	return server, nil
}

func waitHealthy(ctx context.Context, cfg *restclient.Config, done <-chan error) error {
	rc, err := restclient.UnversionedRESTClientFor(withNegotiatedSerializer(cfg))
	if err != nil {
		return err
	}
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-done:
			return false, fmt.Errorf("server exited: %w", err)
		default:
		}
		var code int
		lastErr = rc.Get().AbsPath("/readyz").Do(ctx).StatusCode(&code).Error()
		return lastErr == nil && code == 200, nil
	})
	if err != nil {
		return fmt.Errorf("server not ready (last error: %v): %w", lastErr, err)
	}
	return nil
}

func withNegotiatedSerializer(cfg *restclient.Config) *restclient.Config {
	c := restclient.CopyConfig(cfg)
	c.NegotiatedSerializer = apiserver.Codecs.WithoutConversion()
	return c
}

// Env reads an integer from the environment, for benchmark sizes.
func Env(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
