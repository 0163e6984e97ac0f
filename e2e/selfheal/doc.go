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

// Package selfheal is the end-to-end test of the supervised local system:
// the real vessel-up binary, built from the tree, brings up the control
// plane and two hypervisors (each a virtlogd, a libvirtd in its own
// namespaces, and an agent) under its supervisor in a state directory of
// its own, a real guest boots, and each component in turn is killed with
// SIGKILL, as an OOM kill or a crash would. Each must come back by itself with no
// acknowledged write lost and the guest's QEMU process untouched; vessel-up
// run again on a healthy, a partly killed and an unsupervised system must
// end healthy, and vessel-up --down must leave nothing running.
package selfheal
