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
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// The vessel-apiservers' Service has no selector: nothing but the launcher
// knows where they listen, so the launcher keeps its EndpointSlices, one
// per replica, named after manifests/local's (vessel-apiserver-local, then
// vessel-apiserver-local-2 ...), as an EndpointSlice controller would from
// the pods' readiness.

var endpointSlices = schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}

// endpointSliceTemplate is manifests/local's EndpointSlice.
func (c *Cluster) endpointSliceTemplate(ctx context.Context) (*unstructured.Unstructured, error) {
	c.endpointMu.Lock()
	defer c.endpointMu.Unlock()
	if c.endpointTemplate != nil {
		return c.endpointTemplate.DeepCopy(), nil
	}
	rendered, err := exec.CommandContext(ctx, c.opts.KubectlBinary, "kustomize", c.opts.ManifestsDir).Output()
	if err != nil {
		return nil, fmt.Errorf("render %s with kubectl kustomize: %w", c.opts.ManifestsDir, exitDetail(err))
	}
	objects, err := decodeYAMLObjects(rendered)
	if err != nil {
		return nil, err
	}
	for _, obj := range objects {
		if obj.GetKind() == "EndpointSlice" {
			c.endpointTemplate = obj
			return obj.DeepCopy(), nil
		}
	}
	return nil, fmt.Errorf("%s has no EndpointSlice for the vessel-apiserver", c.opts.ManifestsDir)
}

// endpointSliceName is the i-th replica's EndpointSlice.
func endpointSliceName(template string, i int) string {
	if i == 1 {
		return template
	}
	return fmt.Sprintf("%s-%d", template, i)
}

// publishEndpoint applies the i-th vessel-apiserver's EndpointSlice: its
// port, and whether it is ready.
func (c *Cluster) publishEndpoint(ctx context.Context, i int, ready bool) error {
	slice, err := c.endpointSliceTemplate(ctx)
	if err != nil {
		return err
	}
	slice.SetName(endpointSliceName(slice.GetName(), i))
	ports, _, _ := unstructured.NestedSlice(slice.Object, "ports")
	for _, p := range ports {
		p.(map[string]any)["port"] = int64(c.Ports.VesselAPIServerPorts()[i-1])
	}
	endpoints, _, _ := unstructured.NestedSlice(slice.Object, "endpoints")
	for _, ep := range endpoints {
		ep.(map[string]any)["conditions"] = map[string]any{"ready": ready}
	}
	if err := unstructured.SetNestedSlice(slice.Object, ports, "ports"); err != nil {
		return err
	}
	if err := unstructured.SetNestedSlice(slice.Object, endpoints, "endpoints"); err != nil {
		return err
	}
	client, err := c.endpointsClient()
	if err != nil {
		return err
	}
	data, err := slice.MarshalJSON()
	if err != nil {
		return err
	}
	force := true
	_, err = client.Namespace(slice.GetNamespace()).Patch(ctx, slice.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: fieldManager, Force: &force})
	if err != nil {
		return fmt.Errorf("apply EndpointSlice %s/%s (ready: %v): %w", slice.GetNamespace(), slice.GetName(), ready, err)
	}
	return nil
}

// removeStaleEndpoints deletes the EndpointSlices of replicas beyond
// Options.APIServers, left by an earlier start with more of them.
func (c *Cluster) removeStaleEndpoints(ctx context.Context, cfg *rest.Config) error {
	template, err := c.endpointSliceTemplate(ctx)
	if err != nil {
		return err
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	slices := client.Resource(endpointSlices).Namespace(template.GetNamespace())
	list, err := slices.List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: template.GetLabels()})})
	if err != nil {
		return fmt.Errorf("list the vessel-apiserver's EndpointSlices: %w", err)
	}
	wanted := map[string]bool{}
	for i := 1; i <= c.opts.APIServers; i++ {
		wanted[endpointSliceName(template.GetName(), i)] = true
	}
	var errs []error
	for _, slice := range list.Items {
		name := slice.GetName()
		if wanted[name] || !strings.HasPrefix(name, template.GetName()+"-") {
			continue
		}
		if err := slices.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete stale EndpointSlice %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Cluster) endpointsClient() (dynamic.NamespaceableResourceInterface, error) {
	cfg, err := c.AdminConfig()
	if err != nil {
		return nil, err
	}
	// FQDN EndpointSlices draw a deprecation warning on every write; it
	// is expected here (see serverSideApply).
	cfg.WarningHandler = rest.NoWarnings{}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return client.Resource(endpointSlices), nil
}
