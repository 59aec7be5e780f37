//go:build tools

// Package tools pins versitygw, an S3-compatible gateway over a local directory: the S3 server the backup
// tests and benchmark store artifacts in (docs/backup.md).
package tools

import _ "github.com/versity/versitygw/cmd/versitygw"
