//go:build tools

// Package tools pins kube-apiserver v1.37 for the tenant test of KV/RangeStream (1.37 calls it first
// and falls back to Range only on UNIMPLEMENTED).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
