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

// Package guestagent is the end-to-end test of the QEMU guest agent as a
// user relies on it, through a real kube-apiserver, the vessel-apiserver, a
// node agent, libvirt and the test guest's qemu-ga: `kubectl vm guestinfo`
// shows the guest's OS, a disk snapshot of the running guest is taken with
// its filesystems frozen, and `kubectl vm restart --soft` reboots the guest
// inside the same QEMU process.
//
//	VESSEL_E2E=1 go test ./e2e/guestagent -v -timeout 20m
//
// VESSEL_GUEST_DIR names the test guest's directory when it is not where
// `make deps` installs it (it must be under /var/lib/vessel/images).
package guestagent
