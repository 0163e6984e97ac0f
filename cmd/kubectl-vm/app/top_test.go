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

package app

import (
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	metricsv1alpha1 "github.com/vessel-vm/vessel/apis/metrics/v1alpha1"
)

func usageOf(ns, name, cpu, mem string) metricsv1alpha1.VirtualMachineMetrics {
	return metricsv1alpha1.VirtualMachineMetrics{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Usage: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse(cpu),
			corev1.ResourceMemory: resource.MustParse(mem),
		},
	}
}

func TestPrintUsage(t *testing.T) {
	items := []metricsv1alpha1.VirtualMachineMetrics{
		usageOf("team-b", "idle", "3m", "190Mi"),
		usageOf("team-a", "busy", "1012m", "180Mi"),
		usageOf("team-a", "big", "20m", "1Gi"),
	}
	tests := []struct {
		name       string
		namespaces bool
		sortBy     string
		headers    bool
		want       string
	}{
		{"by name", false, "", true, `
NAME   CPU(cores)   MEMORY(bytes)
big    20m          1024Mi
busy   1012m        180Mi
idle   3m           190Mi
`},
		{"all namespaces by cpu", true, "cpu", true, `
NAMESPACE   NAME   CPU(cores)   MEMORY(bytes)
team-a      busy   1012m        180Mi
team-a      big    20m          1024Mi
team-b      idle   3m           190Mi
`},
		{"by memory without headers", false, "memory", false, `
big    20m     1024Mi
idle   3m      190Mi
busy   1012m   180Mi
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := printUsage(&out, items, tt.namespaces, tt.sortBy, tt.headers); err != nil {
				t.Fatal(err)
			}
			if want := strings.TrimPrefix(tt.want, "\n"); out.String() != want {
				t.Errorf("printed\n%s\nwant\n%s", out.String(), want)
			}
		})
	}
}

func TestTopRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"top", "a", "b"},
		{"top", "a", "-A"},
		{"top", "--sort-by", "disk"},
	} {
		var out bytes.Buffer
		cmd := NewCommand(testStreams(&out))
		cmd.SetArgs(args)
		if err := cmd.Execute(); err == nil {
			t.Errorf("kubectl vm %v succeeded; want an argument error", args)
		}
	}
}
