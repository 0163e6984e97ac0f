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

// Package console is the node agent's console stream server. The
// vessel-apiserver proxies `kubectl vm console` and `kubectl vm logs` to it
// over mutual TLS; it speaks the Kubernetes remote-command protocols
// (WebSocket v5.channel.k8s.io and v4, SPDY v4.channel.k8s.io) so
// client-go's remotecommand executors work unchanged, as for `kubectl
// attach`.
//
// Each VM's serial console is one libvirt stream, owned by a Hub: the hub
// fans guest output out to every attached Session and into a bounded Ring
// of recent output, and feeds the guest the input of the one session that
// holds it. A second viewer never kicks the first; force takes input over;
// read-only sessions never hold it.
package console
