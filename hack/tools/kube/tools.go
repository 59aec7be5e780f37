//go:build tools

// Package tools pins the control-plane binaries the local harness runs:
// kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and the
// node's kubelet and kube-proxy from k8s.io/kubernetes, the demo's tenant API
// server (k8s.io/sample-apiserver) at the same version, and
// etcd/etcdctl at the etcd version that Kubernetes release is built against.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/sample-apiserver"
)
