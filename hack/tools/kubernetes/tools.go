//go:build tools

// Package main pins kube-controller-manager's dependencies in this module
// so that hack/build-kubernetes.sh can build it alongside kube-apiserver:
// the local control plane needs its garbage collector, namespace
// finalizer and ClusterRole aggregation.
package main

import _ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
