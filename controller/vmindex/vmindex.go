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

// Package vmindex holds the informer indexes that several controllers of
// the vessel-apiserver share on one VM informer.
package vmindex

import (
	"fmt"

	"k8s.io/client-go/tools/cache"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// ByNode indexes VMs by spec.nodeName: what a hypervisor has bound.
const ByNode = "spec.nodeName"

// AddByNode adds the ByNode index to a VM informer unless a controller
// sharing the informer has added it already.
func AddByNode(informer cache.SharedIndexInformer) error {
	if _, ok := informer.GetIndexer().GetIndexers()[ByNode]; ok {
		return nil
	}
	err := informer.AddIndexers(cache.Indexers{ByNode: func(obj any) ([]string, error) {
		if vm, ok := obj.(*v1alpha1.VirtualMachine); ok && vm.Spec.NodeName != "" {
			return []string{vm.Spec.NodeName}, nil
		}
		return nil, nil
	}})
	if err != nil {
		return fmt.Errorf("index VMs by node: %w", err)
	}
	return nil
}
