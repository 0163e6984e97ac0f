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

package launcher

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	vesselAPIServerName = "vessel-apiserver"
	// vesselAPIService is the APIService that routes vessel.dev/v1alpha1.
	vesselAPIService   = "v1alpha1.vessel.dev"
	vesselGroupVersion = "vessel.dev/v1alpha1"
	// fieldManager owns what the launcher applies.
	fieldManager = "vessel-launcher"
)

// VesselAPIServerURL is where the vessel-apiserver serves, directly.
func (c *Cluster) VesselAPIServerURL() string {
	return fmt.Sprintf("https://127.0.0.1:%d", c.Ports.VesselAPIServer)
}

// VesselAPIServerComponent names the i-th (from 1) vessel-apiserver: the
// first is vessel-apiserver, as when only one runs, the others
// vessel-apiserver@<i>.
func VesselAPIServerComponent(i int) string {
	if i == 1 {
		return vesselAPIServerName
	}
	return fmt.Sprintf("%s@%d", vesselAPIServerName, i)
}

// vesselAPIServerComponents are the vessel-apiservers (Options.APIServers),
// the first with its embedded etcd under the state directory unless the
// vessel etcd cluster runs. Before the first start of each the launcher
// applies manifests/local (RBAC, roles, Service, APIService: what a real
// cluster gets, pointed at loopback); RBAC has to come first, since the
// server's /readyz needs its reads allowed. Each replica has an
// EndpointSlice of the Service of its own (replicas listen on ports of
// their own, and a slice's port is for all its endpoints), which says
// ready once the replica's /readyz does and, with several replicas, not
// ready once it exits, so that the aggregator routes around it. A replica
// is ready once kube-apiserver reports the APIService Available and serves
// vessel.dev's OpenAPI.
func (c *Cluster) vesselAPIServerComponents() ([]*component, error) {
	client, err := c.verifyingHTTPClient(c.PKI.ClusterCA.CertFile)
	if err != nil {
		return nil, err
	}
	after := []string{kubeAPIServerName}
	for i := 1; i <= c.opts.EtcdMembers; i++ {
		after = append(after, VesselEtcdComponent(i))
	}
	var comps []*component
	for i := 1; i <= c.opts.APIServers; i++ {
		enter, binary, args, err := c.vesselAPIServerCommand(context.Background(), c.vesselAPIServerArgs(i))
		if err != nil {
			return nil, err
		}
		url := c.vesselAPIServerReplicaURL(i)
		comp := &component{
			name:    VesselAPIServerComponent(i),
			enter:   enter,
			binary:  binary,
			args:    args,
			after:   after,
			prepare: c.applyLocalManifests,
			ready: func(ctx context.Context, p *process) error {
				if err := waitReady(ctx, p, client, url+"/readyz", c.opts.ReadyTimeout); err != nil {
					return err
				}
				if err := c.publishEndpoint(ctx, i, true); err != nil {
					return err
				}
				if err := c.WaitAPIServiceAvailable(ctx, c.opts.ReadyTimeout); err != nil {
					return err
				}
				return c.waitOpenAPIPublished(ctx)
			},
		}
		if c.opts.APIServers > 1 {
			comp.onExit = func(ctx context.Context) {
				if err := c.publishEndpoint(ctx, i, false); err != nil {
					c.opts.Logf("%s exited, but its endpoint still says ready: %v", comp.name, err)
				}
			}
		}
		comps = append(comps, comp)
	}
	return comps, nil
}

// vesselAPIServerReplicaURL is where the i-th vessel-apiserver serves,
// directly.
func (c *Cluster) vesselAPIServerReplicaURL(i int) string {
	return fmt.Sprintf("https://127.0.0.1:%d", c.Ports.VesselAPIServerPorts()[i-1])
}

// waitOpenAPIPublished waits until kube-apiserver serves vessel.dev's
// OpenAPI v3 document. It fetches it from the vessel-apiserver only after
// the APIService turns Available, and until then `kubectl explain vm` fails
// with "couldn't find resource".
func (c *Cluster) waitOpenAPIPublished(ctx context.Context) error {
	cfg, err := c.AdminConfig()
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	const path = "apis/" + vesselGroupVersion
	ctx, cancel := context.WithTimeout(ctx, c.opts.ReadyTimeout)
	defer cancel()
	for {
		paths, err := dc.OpenAPIV3().Paths()
		if _, ok := paths[path]; ok && err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver does not serve /openapi/v3/%s (last error: %v): %w", path, err, ctx.Err())
		case <-time.After(readyPollInterval):
		}
	}
}

// RestartVesselAPIServer starts the vessel-apiserver again, with the same
// flags and the same embedded etcd data, after it died (tests kill it with
// SIGKILL to play a crash), and waits until it is ready and kube-apiserver
// reports the APIService Available again. It refuses to start a second
// server next to one that still runs: two embedded etcds on one data
// directory would corrupt it.
func (c *Cluster) RestartVesselAPIServer(ctx context.Context) error {
	comp, err := c.component(vesselAPIServerName)
	if err != nil || comp.proc == nil {
		return errors.New("restart vessel-apiserver: this Cluster did not start one")
	}
	select {
	case <-comp.proc.exited:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("restart vessel-apiserver: pid %d still runs; stop it first", comp.proc.pid)
	}
	if _, err := c.sup.start(ctx, comp); err != nil {
		return fmt.Errorf("restart vessel-apiserver: %w", err)
	}
	return nil
}

// vesselAPIServerArgs are the i-th vessel-apiserver's flags.
func (c *Cluster) vesselAPIServerArgs(i int) []string {
	kubeconfig := c.Kubeconfig(VesselAPIServerKubeconfig)
	args := []string{
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", c.Ports.VesselAPIServerPorts()[i-1]),
		"--tls-cert-file=" + c.PKI.VesselAPIServer.CertFile,
		"--tls-private-key-file=" + c.PKI.VesselAPIServer.KeyFile,
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--allowed-host-path-roots=" + ImagesDir,
		"--profiling=false",
		// Console and log reach the agent with mutual TLS.
		"--agent-ca-file=" + c.PKI.AgentCA.CertFile,
		"--agent-client-cert-file=" + c.PKI.AgentClient.CertFile,
		"--agent-client-key-file=" + c.PKI.AgentClient.KeyFile,
		// Agents run with --stream-cert-dir get their serving
		// certificates through the CSR API, signed here with the agent CA.
		"--agent-serving-signer-cert-file=" + c.PKI.AgentCA.CertFile,
		"--agent-serving-signer-key-file=" + c.PKI.AgentCA.KeyFile,
	}
	if c.opts.EtcdMembers == 0 {
		args = append(args, "--etcd-data-dir="+filepath.Join(c.layout.root, "vessel-etcd"))
	} else {
		args = append(args,
			"--etcd-servers="+strings.Join(c.vesselEtcdClientURLs(), ","),
			"--etcd-cafile="+c.PKI.EtcdCA.CertFile,
			"--etcd-certfile="+c.PKI.EtcdClient.CertFile,
			"--etcd-keyfile="+c.PKI.EtcdClient.KeyFile,
		)
	}
	return append(args, c.opts.VesselAPIServerArgs...)
}

// verifyingHTTPClient trusts only the given CA: readiness is probed over a
// verified TLS connection, never with verification off.
func (c *Cluster) verifyingHTTPClient(caFile string) (*http.Client, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA %s: %w", caFile, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}, nil
}

// AdminConfig is a client configuration for kube-apiserver as the admin.
func (c *Cluster) AdminConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig(AdminKubeconfig))
	if err != nil {
		return nil, fmt.Errorf("load admin kubeconfig: %w", err)
	}
	return cfg, nil
}

// applyLocalManifests renders manifests/local with kubectl's kustomize,
// fills in what only the launcher knows (the APIService caBundle and the
// loopback port), and server-side applies every object as the admin. The
// demo tenants' namespaces and role bindings are part of manifests/local
// (tenants.yaml), so the YAML exists once and `kubectl apply -k
// manifests/local` gives the same result.
func (c *Cluster) applyLocalManifests(ctx context.Context) error {
	rendered, err := exec.CommandContext(ctx, c.opts.KubectlBinary, "kustomize", c.opts.ManifestsDir).Output()
	if err != nil {
		return fmt.Errorf("render %s with kubectl kustomize: %w", c.opts.ManifestsDir, exitDetail(err))
	}
	caPEM, err := os.ReadFile(c.PKI.ClusterCA.CertFile)
	if err != nil {
		return fmt.Errorf("read cluster CA: %w", err)
	}
	objects, err := decodeYAMLObjects(rendered)
	if err != nil {
		return err
	}
	var apply []*unstructured.Unstructured
	for _, obj := range objects {
		switch obj.GetKind() {
		case "APIService":
			obj.Object["spec"].(map[string]any)["caBundle"] = base64.StdEncoding.EncodeToString(caPEM)
		case "EndpointSlice":
			// Each replica publishes its own (publishEndpoint).
			continue
		}
		apply = append(apply, obj)
	}
	cfg, err := c.AdminConfig()
	if err != nil {
		return err
	}
	if err := serverSideApply(ctx, cfg, apply); err != nil {
		return err
	}
	return c.removeStaleEndpoints(ctx, cfg)
}

func decodeYAMLObjects(data []byte) ([]*unstructured.Unstructured, error) {
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objects []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		if err := decoder.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objects, nil
			}
			return nil, fmt.Errorf("decode manifests: %w", err)
		}
		if len(obj.Object) > 0 {
			objects = append(objects, obj)
		}
	}
}

// serverSideApply applies objects in order with the launcher as field manager.
func serverSideApply(ctx context.Context, cfg *rest.Config, objects []*unstructured.Unstructured) error {
	// The FQDN EndpointSlice that routes to loopback draws a deprecation
	// warning on every apply; it is expected here, not news for the user.
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = rest.NoWarnings{}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	force := true
	for _, obj := range objects {
		gvk := obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, gvk.Version)
		if err != nil {
			return fmt.Errorf("map %s: %w", gvk, err)
		}
		data, err := obj.MarshalJSON()
		if err != nil {
			return err
		}
		var ri dynamic.ResourceInterface = client.Resource(mapping.Resource)
		if ns := obj.GetNamespace(); ns != "" {
			ri = client.Resource(mapping.Resource).Namespace(ns)
		}
		_, err = ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: fieldManager, Force: &force})
		if err != nil {
			return fmt.Errorf("apply %s %s/%s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
		}
	}
	return nil
}

// WaitAPIServiceAvailable waits until kube-apiserver routes vessel.dev to a
// healthy vessel-apiserver.
func (c *Cluster) WaitAPIServiceAvailable(ctx context.Context, timeout time.Duration) error {
	cfg, err := c.AdminConfig()
	if err != nil {
		return err
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "not found yet"
	for {
		svc, err := client.Resource(gvr).Get(ctx, vesselAPIService, metav1.GetOptions{})
		if err == nil {
			conditions, _, _ := unstructured.NestedSlice(svc.Object, "status", "conditions")
			for _, cond := range conditions {
				m := cond.(map[string]any)
				if m["type"] == "Available" {
					if m["status"] == "True" {
						return nil
					}
					last = fmt.Sprintf("%v: %v", m["reason"], m["message"])
				}
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("APIService %s not Available (last: %s): %w", vesselAPIService, last, ctx.Err())
		case <-time.After(readyPollInterval):
		}
	}
}

func exitDetail(err error) error {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}
