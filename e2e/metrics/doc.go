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

// Package metrics is the end-to-end test of Vessel's observability: a
// guest busy with `yes` and an idle one under a real control plane and
// libvirtd, read through `kubectl vm top` (metrics.vessel.dev, with RBAC),
// the agent's Prometheus endpoint (delegated authentication and
// authorization) and, when hack/build-prometheus.sh has built them,
// promtool and a real Prometheus server scraping the agent and the
// vessel-apiserver with the credentials the manifests grant.
package metrics
