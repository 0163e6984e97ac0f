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

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
)

// The CRD twin of VirtualMachine lives in a group of its own: vessel.dev
// belongs to the APIService.
const (
	crdGroup   = "crdbench.vessel.dev"
	crdVersion = "v1alpha1"
	crdPlural  = "virtualmachines"
	crdName    = crdPlural + "." + crdGroup

	vmSchemaName  = "dev.vessel.v1alpha1.VirtualMachine"
	schemaRefRoot = "#/components/schemas/"
	// quantityPattern is what controller-gen puts on resource.Quantity
	// fields of CRDs.
	quantityPattern = `^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$`
)

var (
	crdGVR = schema.GroupVersionResource{Group: crdGroup, Version: crdVersion, Resource: crdPlural}
	// crdsGVR is the CustomResourceDefinition resource itself; the dynamic
	// client spares the apiextensions module.
	crdsGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// vmStructuralSchema reads VirtualMachine's schema from the OpenAPI v3
// document kube-apiserver serves for vessel.dev/v1alpha1 and turns it into
// a structural CRD schema with the same fields, types, enums, list types
// and required fields: references inlined, metadata left to the server,
// quantities as int-or-string with their pattern.
func vmStructuralSchema(dc discovery.DiscoveryInterface) (map[string]any, error) {
	paths, err := dc.OpenAPIV3().Paths()
	if err != nil {
		return nil, fmt.Errorf("list OpenAPI v3 paths: %w", err)
	}
	gv, ok := paths["apis/vessel.dev/v1alpha1"]
	if !ok {
		return nil, fmt.Errorf("kube-apiserver serves no OpenAPI v3 for vessel.dev/v1alpha1: is the APIService Available?")
	}
	raw, err := gv.Schema("application/json")
	if err != nil {
		return nil, fmt.Errorf("fetch the vessel.dev/v1alpha1 OpenAPI: %w", err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("decode the vessel.dev/v1alpha1 OpenAPI: %w", err)
	}
	schemas := doc.Components.Schemas
	vm, ok := schemas[vmSchemaName]
	if !ok {
		return nil, fmt.Errorf("no %s in the vessel.dev/v1alpha1 OpenAPI", vmSchemaName)
	}
	out, err := structural(vm, schemas, nil)
	if err != nil {
		return nil, err
	}
	// The server owns metadata's schema in a CRD.
	out.(map[string]any)["properties"].(map[string]any)["metadata"] = map[string]any{"type": "object"}
	return out.(map[string]any), nil
}

// structural rewrites one schema node; seen guards against reference cycles.
func structural(node any, schemas map[string]map[string]any, seen []string) (any, error) {
	switch n := node.(type) {
	case []any:
		out := make([]any, len(n))
		for i, v := range n {
			var err error
			if out[i], err = structural(v, schemas, seen); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		// A property that only references another schema (kube-openapi
		// writes `allOf: [{$ref}]` next to its description) becomes that
		// schema with the property's description.
		if ref, ok := singleRef(n); ok {
			resolved, err := resolve(ref, schemas, seen)
			if err != nil {
				return nil, err
			}
			if desc, ok := n["description"]; ok {
				resolved["description"] = desc
			}
			return resolved, nil
		}
		out := map[string]any{}
		for k, v := range n {
			switch k {
			case "default", "x-kubernetes-group-version-kind":
				// kube-openapi's zero-value defaults ({} and "") carry no
				// meaning; the GVK extension is not allowed in CRDs.
				continue
			}
			converted, err := structural(v, schemas, seen)
			if err != nil {
				return nil, err
			}
			out[k] = converted
		}
		return out, nil
	default:
		return node, nil
	}
}

func singleRef(n map[string]any) (string, bool) {
	if ref, ok := n["$ref"].(string); ok {
		return ref, true
	}
	if all, ok := n["allOf"].([]any); ok && len(all) == 1 {
		if m, ok := all[0].(map[string]any); ok {
			if ref, ok := m["$ref"].(string); ok {
				return ref, true
			}
		}
	}
	return "", false
}

func resolve(ref string, schemas map[string]map[string]any, seen []string) (map[string]any, error) {
	name, ok := strings.CutPrefix(ref, schemaRefRoot)
	if !ok {
		return nil, fmt.Errorf("unsupported reference %q", ref)
	}
	for _, s := range seen {
		if s == name {
			return nil, fmt.Errorf("recursive schema %s: CRDs cannot express it", name)
		}
	}
	switch name {
	case "io.k8s.apimachinery.pkg.api.resource.Quantity":
		return map[string]any{
			"anyOf":                      []any{map[string]any{"type": "integer"}, map[string]any{"type": "string"}},
			"pattern":                    quantityPattern,
			"x-kubernetes-int-or-string": true,
		}, nil
	case "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta":
		return map[string]any{"type": "object"}, nil
	}
	target, ok := schemas[name]
	if !ok {
		return nil, fmt.Errorf("reference to unknown schema %s", name)
	}
	out, err := structural(target, schemas, append(seen, name))
	if err != nil {
		return nil, err
	}
	return out.(map[string]any), nil
}

// createCRD installs the twin CRD and waits until kube-apiserver serves it.
func createCRD(ctx context.Context, client dynamic.Interface, openAPISchema map[string]any) error {
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": crdName},
		"spec": map[string]any{
			"group": crdGroup,
			"scope": "Namespaced",
			"names": map[string]any{
				"plural": crdPlural, "singular": "virtualmachine", "kind": "VirtualMachine", "listKind": "VirtualMachineList",
			},
			"versions": []any{map[string]any{
				"name": crdVersion, "served": true, "storage": true,
				"schema":       map[string]any{"openAPIV3Schema": openAPISchema},
				"subresources": map[string]any{"status": map[string]any{}},
			}},
		},
	}}
	_, err := client.Resource(crdsGVR).Create(ctx, crd, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("CRD %s exists already (a previous run?): delete it first", crdName)
	}
	if err != nil {
		return fmt.Errorf("create CRD %s: %w", crdName, err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		got, err := client.Resource(crdsGVR).Get(ctx, crdName, metav1.GetOptions{})
		if err == nil && established(got) {
			// Established is set before every handler serves the new
			// resource: wait until a list answers.
			if _, err := client.Resource(crdGVR).Namespace("default").List(ctx, metav1.ListOptions{Limit: 1}); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRD %s not served: %w", crdName, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkSchemaEnforced makes sure the CRD validates like the real thing
// rather than storing anything: a VM with a string for spec.cpus and an
// unknown disk source must be refused by both paths.
func checkSchemaEnforced(ctx context.Context, resources map[string]dynamic.ResourceInterface, namespace string) error {
	for apiVersion, resource := range resources {
		bad := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": apiVersion,
			"kind":       "VirtualMachine",
			"metadata":   map[string]any{"name": "invalid", "namespace": namespace},
			"spec":       map[string]any{"cpus": "many", "memory": "lots"},
		}}
		_, err := resource.Create(ctx, bad, metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
			return fmt.Errorf("%s accepted or failed otherwise on an invalid VM (err: %v): its schema is not enforced", apiVersion, err)
		}
	}
	return nil
}

func established(crd *unstructured.Unstructured) bool {
	conditions, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conditions {
		if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

func deleteCRD(ctx context.Context, client dynamic.Interface) error {
	err := client.Resource(crdsGVR).Delete(ctx, crdName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete CRD %s: %w", crdName, err)
	}
	return nil
}
