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

// Package agentcert is the end-to-end test of per-agent serving
// certificates, through a real kube-apiserver: agents run as in
// manifests/cluster (--stream-cert-dir) and get their certificates through
// the CSR API, signed by the vessel-apiserver; a console works on them; an
// endpoint presenting one hypervisor's certificate for another is refused
// with a message the console user can read; and a CSR an agent makes for
// another hypervisor is denied, saying why.
package agentcert
