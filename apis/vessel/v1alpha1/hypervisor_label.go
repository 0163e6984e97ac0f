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

package v1alpha1

// LabelHypervisor is put on every Hypervisor by its agent, with the
// Hypervisor's name as value (when that is a valid label value), like
// kubernetes.io/hostname on Nodes: a VM's nodeSelector can name one host.
// Clones use it to land on the hypervisor that holds their source's memory.
const LabelHypervisor = "vessel.dev/hypervisor"
