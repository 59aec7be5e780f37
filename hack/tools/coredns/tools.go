//go:build tools

// Package tools pins CoreDNS, the real node's cluster DNS (localcp/dns.py): pods resolve
// etcd-<name>.<namespace>.svc through it, as in any cluster.
package tools

import (
	_ "github.com/coredns/coredns"
)
