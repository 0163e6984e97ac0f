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

package images

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/vessel-vm/vessel/launcher/rootfs"
)

// What a kubelet and a container runtime would do with a pod of
// install.yaml, done by hand: its container's arguments with $(VAR)
// expanded, its volumes as bind mounts, its ServiceAccount's token.

// serviceAccountDir is where a pod finds its ServiceAccount's token.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// installObjects decodes the release's install.yaml.
func (e *env) installObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.releaseDir, "install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("decode install.yaml: %v", err)
		}
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
}

// podSpec returns the pod template of install.yaml's Deployment or
// DaemonSet name.
func (e *env) podSpec(t *testing.T, kind, name string) corev1.PodSpec {
	t.Helper()
	for _, obj := range e.installObjects(t) {
		if obj.GetKind() != kind || obj.GetName() != name {
			continue
		}
		switch kind {
		case "Deployment":
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &d); err != nil {
				t.Fatal(err)
			}
			return d.Spec.Template.Spec
		case "DaemonSet":
			var d appsv1.DaemonSet
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &d); err != nil {
				t.Fatal(err)
			}
			return d.Spec.Template.Spec
		}
	}
	t.Fatalf("install.yaml has no %s %s", kind, name)
	return corev1.PodSpec{}
}

// containerArgs expands $(VAR) in the container's arguments with its
// environment, whose fieldRefs take their values from fields (fieldPath ->
// value), as the kubelet does.
func containerArgs(t *testing.T, c corev1.Container, fields map[string]string) []string {
	t.Helper()
	vars := map[string]string{}
	for _, ev := range c.Env {
		switch {
		case ev.ValueFrom != nil && ev.ValueFrom.FieldRef != nil:
			v, ok := fields[ev.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Fatalf("container %s: no value for the field %s of env %s", c.Name, ev.ValueFrom.FieldRef.FieldPath, ev.Name)
			}
			vars[ev.Name] = v
		case ev.ValueFrom == nil:
			vars[ev.Name] = ev.Value
		}
	}
	args := append(append([]string{}, c.Command...), c.Args...)
	for i, a := range args {
		for k, v := range vars {
			a = strings.ReplaceAll(a, "$("+k+")", v)
		}
		args[i] = a
	}
	return args
}

// setFlag replaces --name's value in args, or adds it.
func setFlag(args []string, name, value string) []string {
	out := dropFlag(args, name)
	return append(out, name+"="+value)
}

// dropFlag removes --name=... from args.
func dropFlag(args []string, name string) []string {
	var out []string
	for _, a := range args {
		if a != name && !strings.HasPrefix(a, name+"=") {
			out = append(out, a)
		}
	}
	return out
}

// flagValue is --name's value in args.
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// podVolumes says where a pod's volumes come from on this machine.
type podVolumes struct {
	// secrets are Secret contents by name, as the cluster holds them.
	secrets map[string]map[string][]byte
	// hostPaths maps a hostPath volume's path to the directory that stands
	// in for it (for instance a temporary one instead of /var/lib/vessel).
	hostPaths map[string]string
	// token is the ServiceAccount's token; with caCert, mounted where
	// client-go's in-cluster configuration reads them.
	token, caCert []byte
	namespace     string
}

// mounts turns the container's volume mounts into bind mounts of
// directories under dir, filled as the kubelet fills them (Secret keys as
// files, mode 0644).
func (v podVolumes) mounts(t *testing.T, spec corev1.PodSpec, c corev1.Container, dir string) []rootfs.Mount {
	t.Helper()
	volumes := map[string]corev1.Volume{}
	for _, vol := range spec.Volumes {
		volumes[vol.Name] = vol
	}
	var mounts []rootfs.Mount
	for _, vm := range c.VolumeMounts {
		vol, ok := volumes[vm.Name]
		if !ok {
			t.Fatalf("container %s mounts the undeclared volume %s", c.Name, vm.Name)
		}
		var src string
		switch {
		case vol.Secret != nil:
			data, ok := v.secrets[vol.Secret.SecretName]
			if !ok {
				t.Fatalf("volume %s: no content for Secret %s in this test", vm.Name, vol.Secret.SecretName)
			}
			src = writeFiles(t, filepath.Join(dir, "secret-"+vol.Secret.SecretName), data)
		case vol.HostPath != nil:
			if src, ok = v.hostPaths[vol.HostPath.Path]; !ok {
				t.Fatalf("volume %s: no stand-in for hostPath %s in this test", vm.Name, vol.HostPath.Path)
			}
		default:
			t.Fatalf("volume %s: only Secret and hostPath volumes are mapped", vm.Name)
		}
		mounts = append(mounts, rootfs.Mount{Source: src, Target: vm.MountPath, ReadOnly: vm.ReadOnly})
	}
	if spec.ServiceAccountName != "" && (spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken) {
		if v.token == nil {
			t.Fatalf("the pod runs as ServiceAccount %s: give its token", spec.ServiceAccountName)
		}
		src := writeFiles(t, filepath.Join(dir, "serviceaccount"), map[string][]byte{
			"token": v.token, "ca.crt": v.caCert, "namespace": []byte(v.namespace),
		})
		mounts = append(mounts, rootfs.Mount{Source: src, Target: serviceAccountDir, ReadOnly: true})
	}
	return mounts
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// imageRef is the reference of an image just built (REPO:TAG@DIGEST).
func (e *env) imageRef(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.imagesDir, name+".ref"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// container is the one container of a pod spec.
func container(t *testing.T, spec corev1.PodSpec) corev1.Container {
	t.Helper()
	if len(spec.Containers) != 1 {
		t.Fatalf("want one container, the pod has %d", len(spec.Containers))
	}
	return spec.Containers[0]
}

func fmtEnv(k string, v any) string { return fmt.Sprintf("%s=%v", k, v) }
