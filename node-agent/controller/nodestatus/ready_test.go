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

package nodestatus

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

func TestReadyCondition(t *testing.T) {
	tests := []struct {
		name       string
		libvirtErr error
		status     metav1.ConditionStatus
		reason     string
		message    string
	}{
		{"libvirtd answers", nil, metav1.ConditionTrue, ReasonHeartbeat, "reaches libvirtd"},
		{"connection lost", hypervisor.ErrDisconnected, metav1.ConditionFalse, ReasonLibvirtdUnreachable, "libvirtd is unreachable: not connected to libvirtd"},
		{"call failed", fmt.Errorf("get libvirt version: %w", fmt.Errorf("rpc: broken pipe")), metav1.ConditionFalse, ReasonLibvirtdUnreachable, "broken pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := readyCondition(tt.libvirtErr)
			if c.Type != v1alpha1.HypervisorConditionReady || c.Status != tt.status || c.Reason != tt.reason || !strings.Contains(c.Message, tt.message) {
				t.Errorf("readyCondition(%v) = %+v, want %s/%s with %q", tt.libvirtErr, c, tt.status, tt.reason, tt.message)
			}
		})
	}
}
