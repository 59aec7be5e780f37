//go:build tools

// Package tools pins the control-plane binaries the local harness runs:
// kube-apiserver and kube-controller-manager from k8s.io/kubernetes, and
// etcd/etcdctl at the etcd version that Kubernetes release is built against.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
