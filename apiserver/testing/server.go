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
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	restclient "k8s.io/client-go/rest"

	"github.com/vessel-vm/vessel/apiserver"
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
	// DisableControllers serves the API alone: no scheduler binds VMs and
	// no heartbeat monitor writes hypervisor conditions behind the test's
	// back.
	DisableControllers bool
	// AgentClient lets console and log reach node agents; without it they
	// answer 503.
	AgentClient apiserver.AgentClientOptions
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
	o := apiserver.NewOptions()
	o.EtcdDataDir = dir
	if opts.AllowedHostPathRoots != nil {
		o.AllowedHostPathRoots = opts.AllowedHostPathRoots
	}
	o.WritableHostPathRoots = opts.WritableHostPathRoots
	o.DisableControllers = opts.DisableControllers
	o.AgentClient = opts.AgentClient
	ro := o.RecommendedOptions
	ro.SecureServing.Listener = listener
	ro.SecureServing.BindPort = listener.Addr().(*net.TCPAddr).Port
	ro.SecureServing.BindAddress = net.ParseIP("127.0.0.1")
	// No kube-apiserver here: no delegated authn/authz, core informers or
	// webhook admission.
	ro.Authentication.RemoteKubeConfigFileOptional = true
	ro.Authorization.RemoteKubeConfigFileOptional = true
	ro.CoreAPI = nil
	ro.Admission = nil
	ro.Features.EnablePriorityAndFairness = false
	if err := o.Complete(); err != nil {
		return nil, nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	server, stopEtcd, err := o.NewServer()
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.GenericAPIServer.PrepareRun().RunWithContext(ctx) }()
	stop := func() {
		cancel()
		<-done
		stopEtcd()
	}

	cfg := restclient.CopyConfig(server.GenericAPIServer.LoopbackClientConfig)
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
