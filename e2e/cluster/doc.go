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

// Package cluster launches a real, single-machine Vessel control plane: etcd,
// the upstream kube-apiserver and (later) the vessel-apiserver, each as a
// detached child process, with all of its PKI and kubeconfigs kept in one
// state directory (by default .vessel/ at the repository root):
//
//	.vessel/
//	  pki/              CAs, serving and client certificates, service-account keys
//	  etcd/             etcd data; kept across Down and Start
//	  run/              one PID file per running process
//	  logs/             one log file per process
//	  ports.json        loopback ports chosen on first start, reused afterwards
//	  admin.kubeconfig  system:masters
//	  alice.kubeconfig  tenant users, without permissions until RBAC grants some
//	  bob.kubeconfig
//	  vessel-apiserver.kubeconfig  the vessel-apiserver's identity toward kube-apiserver
//
// The same launcher backs `make up` (which must return while the control
// plane keeps running, hence detached processes and PID files) and the e2e
// tests (which call Start and Stop around each test with a temporary state
// directory).
package cluster
