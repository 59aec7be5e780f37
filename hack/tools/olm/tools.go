//go:build tools

// Package tools pins what installs OLM on the local cluster (docs/olm.md): OLM's controllers and
// utilities, opm (operator-registry) for the catalog and bundle unpacking, grpc_health_probe that
// OLM's catalog pods are probed with, and crane to push the images to the harness's registry.
package tools

import (
	_ "github.com/google/go-containerregistry/cmd/crane"
	_ "github.com/grpc-ecosystem/grpc-health-probe"
	_ "github.com/operator-framework/operator-lifecycle-manager/cmd/catalog"
	_ "github.com/operator-framework/operator-lifecycle-manager/cmd/copy-content"
	_ "github.com/operator-framework/operator-lifecycle-manager/cmd/olm"
	_ "github.com/operator-framework/operator-lifecycle-manager/cmd/package-server"
	_ "github.com/operator-framework/operator-lifecycle-manager/util/cpb"
	_ "github.com/operator-framework/operator-registry/cmd/opm"
)
