//go:build tools

// Package tools pins helm, which renders OLM's own chart (from the OLM module pinned in ../olm) into
// the manifests the local cluster applies (localcp/olm.py).
package tools

import _ "helm.sh/helm/v3/cmd/helm"
