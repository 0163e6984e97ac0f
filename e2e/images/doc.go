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

// Package images proves, as far as a machine without a container runtime
// or a registry allows, that a real cluster can install Vessel from what
// `make images` and `make release` build:
//
//   - the images are reproducible, carry their labels and an SBOM that
//     matches the pinned packages, and the docker-archives hold the same
//     images as the OCI layouts;
//   - the release's archives, checksums and krew manifest agree;
//   - install.yaml passes `kubectl apply --dry-run=server` against a real
//     kube-apiserver and names exactly the images just built, by digest;
//   - each image, unpacked by umoci and run chrooted from its own root
//     filesystem with install.yaml's flags, volumes (the Secrets
//     hack/cluster-certs.sh makes, a ServiceAccount token) and security
//     context, works: the apiserver serves /readyz on the local etcd as its
//     nonroot user from a read-only root, and becomes the APIService's
//     backend (kubectl get apiservice, kubectl get hv); the agent's
//     qemu-img, genisoimage and QEMU run, and the DaemonSet's agent
//     registers its Hypervisor through it.
//
// Run it with
//
//	VESSEL_E2E=1 go test ./e2e/images/ -v
//
// It runs hack/build-images.sh and hack/release.sh first (cached; a cold
// build takes minutes) and needs root, Debian's apt (mmdebstrap, umoci and
// skopeo are installed when missing) and the binaries of `make deps`.
// Without them every test skips, unless VESSEL_E2E is set.
package images
