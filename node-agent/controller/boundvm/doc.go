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

// Package boundvm is what the node agent's controllers share about the VMs
// bound to this node, without sharing any controller's state: who may
// drive a VM's domain right now (Locks), the VM as the agent's cache holds
// it (Lister), and which VM a snapshot or restore was made for (OwnedBy).
package boundvm
