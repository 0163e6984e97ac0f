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

package integration

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
)

// schema is an OpenAPI schema object, loosely typed.
type schema map[string]any

// getJSON fetches an absolute path of the server as JSON.
func getJSON(t *testing.T, s *apiservertesting.TestServer, path string) map[string]any {
	t.Helper()
	raw, err := s.Client.VesselV1alpha1().RESTClient().Get().AbsPath(path).SetHeader("Accept", "application/json").Do(t.Context()).Raw()
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return doc
}

// openAPIDoc is one OpenAPI document and where its schemas live.
type openAPIDoc struct {
	schemas map[string]any
	// refPrefix starts every reference to a schema.
	refPrefix string
}

func (d openAPIDoc) schema(t *testing.T, name string) schema {
	t.Helper()
	s, ok := d.schemas[name].(map[string]any)
	if !ok {
		t.Fatalf("no schema %s", name)
	}
	return s
}

// property returns a property of a schema, following a $ref (v2) or an
// allOf with one $ref (v3) to the referenced schema when follow is set.
func (d openAPIDoc) property(t *testing.T, s schema, name string, follow bool) schema {
	t.Helper()
	props, _ := s["properties"].(map[string]any)
	p, ok := props[name].(map[string]any)
	if !ok {
		t.Fatalf("no property %s in %v", name, keys(props))
	}
	if !follow {
		return p
	}
	ref, _ := p["$ref"].(string)
	if allOf, ok := p["allOf"].([]any); ok && len(allOf) == 1 {
		ref, _ = allOf[0].(map[string]any)["$ref"].(string)
	}
	if !strings.HasPrefix(ref, d.refPrefix) {
		t.Fatalf("property %s refers to %q, want a schema under %s", name, ref, d.refPrefix)
	}
	return d.schema(t, strings.TrimPrefix(ref, d.refPrefix))
}

func keys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func TestOpenAPI(t *testing.T) {
	s := startServer(t)

	v2 := getJSON(t, s, "/openapi/v2")
	definitions, _ := v2["definitions"].(map[string]any)
	index := getJSON(t, s, "/openapi/v3")
	if paths, _ := index["paths"].(map[string]any); paths["apis/vessel.dev/v1alpha1"] == nil {
		t.Errorf("/openapi/v3 does not list apis/vessel.dev/v1alpha1: %v", keys(paths))
	}
	v3 := getJSON(t, s, "/openapi/v3/apis/vessel.dev/v1alpha1")
	components, _ := v3["components"].(map[string]any)
	schemas, _ := components["schemas"].(map[string]any)

	for _, tc := range []struct {
		version string
		doc     openAPIDoc
		paths   map[string]any
	}{
		{"v2", openAPIDoc{definitions, "#/definitions/"}, asMap(v2["paths"])},
		{"v3", openAPIDoc{schemas, "#/components/schemas/"}, asMap(v3["paths"])},
	} {
		t.Run(tc.version, func(t *testing.T) {
			doc := tc.doc
			for kind, wantDoc := range map[string]string{
				"VirtualMachine":         "VirtualMachine is a virtual machine run by a Vessel node agent through libvirt.",
				"VirtualMachineSnapshot": "VirtualMachineSnapshot is a point-in-time copy of a VM's disks",
				"VirtualMachineRestore":  "VirtualMachineRestore returns a VM to the state saved in one of its snapshots.",
				"Hypervisor":             "Hypervisor is a host that runs virtual machines",
			} {
				sch := doc.schema(t, "dev.vessel.v1alpha1."+kind)
				if d, _ := sch["description"].(string); !strings.HasPrefix(d, wantDoc) {
					t.Errorf("%s description = %q, want it to start %q", kind, d, wantDoc)
				}
				if gvk := fmt.Sprint(sch["x-kubernetes-group-version-kind"]); gvk != fmt.Sprintf("[map[group:vessel.dev kind:%s version:v1alpha1]]", kind) {
					t.Errorf("%s x-kubernetes-group-version-kind = %s", kind, gvk)
				}
			}

			spec := doc.property(t, doc.schema(t, "dev.vessel.v1alpha1.VirtualMachine"), "spec", true)
			runStrategy := doc.property(t, spec, "runStrategy", false)
			if d, _ := runStrategy["description"].(string); !strings.Contains(d, "RunStrategy says when the guest should run: Always (default)") {
				t.Errorf("spec.runStrategy description = %q", d)
			}
			if enum := fmt.Sprint(runStrategy["enum"]); enum != "[Always Halted Manual Once RerunOnFailure]" {
				t.Errorf("spec.runStrategy enum = %s", enum)
			}
			for _, list := range []string{"disks", "interfaces"} {
				p := doc.property(t, spec, list, false)
				if p["x-kubernetes-list-type"] != "map" || fmt.Sprint(p["x-kubernetes-list-map-keys"]) != "[name]" {
					t.Errorf("spec.%s: list-type %v, map keys %v; want map keyed by name", list, p["x-kubernetes-list-type"], p["x-kubernetes-list-map-keys"])
				}
			}
			status := doc.property(t, doc.schema(t, "dev.vessel.v1alpha1.VirtualMachine"), "status", true)
			if c := doc.property(t, status, "conditions", false); c["x-kubernetes-list-type"] != "map" || fmt.Sprint(c["x-kubernetes-list-map-keys"]) != "[type]" {
				t.Errorf("status.conditions is not a map keyed by type: %v", c)
			}

			// Every subresource a client can call has its operation.
			base := "/apis/vessel.dev/v1alpha1/namespaces/{namespace}/virtualmachines/{name}/"
			for _, sub := range []string{"binding", "start", "stop", "restart", "pause", "unpause"} {
				if op := asMap(asMap(tc.paths[base+sub])["post"]); op == nil {
					t.Errorf("no POST operation for %s", base+sub)
				}
			}
			if op := asMap(asMap(tc.paths[base+"status"])["patch"]); op == nil {
				t.Errorf("no PATCH operation for %sstatus", base)
			}
		})
	}
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}
