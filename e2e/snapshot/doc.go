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

// Package snapshot is the end-to-end test of snapshots and restores as a
// tenant uses them: `kubectl vm snapshot` and `kubectl vm restore` through
// a real kube-apiserver and its RBAC, the vessel-apiserver behind its
// APIService (with the VesselAgentRestriction admission the agent's
// finalizer writes go through), a node agent and a real guest, and
// kube-controller-manager's garbage collector deleting the snapshots with
// their VM.
//
//	VESSEL_E2E=1 go test ./e2e/snapshot -v -timeout 20m
package snapshot
