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

// Package hypervisors is the end-to-end test of several hypervisors on one
// machine: the real vessel-up starts two, each an agent on a libvirtd of
// its own, in a mount and a network namespace of its own; a guest runs on
// each, inside its hypervisor's namespaces; the namespaces reach each other
// over the fabric while the machine's own network namespace has no part in
// it; a libvirtd killed with SIGKILL comes back in the same namespaces and
// keeps its guest; vessel-up --down and vessel-up again adopt the guests;
// vessel-up --destroy leaves nothing.
package hypervisors
