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

// Package clone is the end-to-end test of clones and warm pools as tenants
// use them: `kubectl vm clone` and `kubectl scale vmpool` through a real
// kube-apiserver and its RBAC, the vessel-apiserver's clone and pool
// controllers, a node agent resuming real guests from memory on this host's
// libvirtd, and the test guest's identity port handler.
//
// The test guest must have the identity port handler (hack/guest/
// vessel-identity, built by hack/build-guest.sh since memory clones):
// VESSEL_GUEST_DIR names its directory when it is not where `make deps`
// installs it; it must lie under /var/lib/vessel/images.
//
//	VESSEL_E2E=1 go test ./e2e/clone -v -timeout 30m
package clone
