//go:build tools

// Package tools pins kwok, which fakes kubelets so Deployments get Ready pods.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
