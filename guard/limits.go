package main

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Limits are one tenant's budgets. Zero means unlimited. Storage, keys, leases and the core's headroom hold
// across every replica of the endpoint (each replica follows the tenant's keys in the core and counts its
// lease markers there); rates, watches and reads in flight are enforced by each replica, so a tenant
// reaches at most replicas × limit in total (a single API server connection lands on one replica and gets
// exactly the limit).
type Limits struct {
	Storage      int64 // live bytes (keys + values) under the prefix
	Keys         int64 // live keys under the prefix
	WriteRate    int64 // bytes/s written (keys + values of puts)
	WriteBurst   int64 // bytes
	RequestRate  int64 // calls/s (every unary call, every watch stream and watch creation)
	RequestBurst int64
	Watches      int64 // open watches on one replica
	Leases       int64 // live leases granted through the endpoint, across replicas (counted in the core)
	// ReadBytesInFlight: bytes of reads one replica has in flight to the core at once (estimated)
	ReadBytesInFlight int64
}

// limitField names each limit as the EtcdStorage spec does, for messages and metric labels.
var limitFields = []struct {
	flag, spec string
	quantity   bool
	set        func(*Limits, int64)
	get        func(Limits) int64
}{
	{"max-bytes", "spec.limits.storage", true, func(l *Limits, v int64) { l.Storage = v }, func(l Limits) int64 { return l.Storage }},
	{"max-keys", "spec.limits.keys", false, func(l *Limits, v int64) { l.Keys = v }, func(l Limits) int64 { return l.Keys }},
	{"write-bytes-per-second", "spec.limits.writeBytesPerSecond", true, func(l *Limits, v int64) { l.WriteRate = v },
		func(l Limits) int64 { return l.WriteRate }},
	{"write-burst-bytes", "spec.limits.writeBurst", true, func(l *Limits, v int64) { l.WriteBurst = v },
		func(l Limits) int64 { return l.WriteBurst }},
	{"requests-per-second", "spec.limits.requestsPerSecond", false, func(l *Limits, v int64) { l.RequestRate = v },
		func(l Limits) int64 { return l.RequestRate }},
	{"request-burst", "spec.limits.requestBurst", false, func(l *Limits, v int64) { l.RequestBurst = v },
		func(l Limits) int64 { return l.RequestBurst }},
	{"max-watches", "spec.limits.watches", false, func(l *Limits, v int64) { l.Watches = v },
		func(l Limits) int64 { return l.Watches }},
	{"max-leases", "spec.limits.leases", false, func(l *Limits, v int64) { l.Leases = v },
		func(l Limits) int64 { return l.Leases }},
	{"max-read-bytes-in-flight", "spec.limits.readBytesInFlight", true,
		func(l *Limits, v int64) { l.ReadBytesInFlight = v }, func(l Limits) int64 { return l.ReadBytesInFlight }},
}

var maxBytes = resource.MustParse("1Pi")

// parseLimit reads a flag value: a Kubernetes quantity ("512Mi", "1G", "0") for byte amounts, a
// plain non-negative integer otherwise.
func parseLimit(flag, value string, quantity bool) (int64, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0, nil
	}
	if quantity {
		q, err := resource.ParseQuantity(value)
		if err != nil {
			return 0, fmt.Errorf("--%s=%q: %v (use a quantity such as 512Mi)", flag, value, err)
		}
		if q.Sign() < 0 || q.Cmp(maxBytes) >= 0 { // the CRD's rule
			return 0, fmt.Errorf("--%s=%q: must be a number of bytes from 0 to below 1Pi", flag, value)
		}
		return q.Value(), nil // fractions of a byte round up
	}
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("--%s=%q: must be a non-negative integer", flag, value)
	}
	return n, nil
}

// Refusal reasons: bounded metric label values, and the names the operator reports.
const (
	reasonStorage     = "storage"
	reasonKeys        = "keys"
	reasonWriteRate   = "write-rate"
	reasonRequestRate = "request-rate"
	reasonWatches     = "watches"
	reasonLeases      = "leases"
	reasonReads       = "reads"
	reasonCoreSpace   = "core-space"
)

var refusalReasons = []string{reasonStorage, reasonKeys, reasonWriteRate, reasonRequestRate, reasonWatches,
	reasonLeases, reasonReads, reasonCoreSpace}

// writeBurst is the write bucket's size: the burst (one second's worth when not set), and never below
// the largest request, which could otherwise never be written.
func (l Limits) writeBurst(maxRequestBytes int) int64 {
	burst := l.WriteBurst
	if burst == 0 {
		burst = l.WriteRate
	}
	return max(burst, int64(maxRequestBytes))
}

// requestBurst is the request bucket's size: the burst, or one second's worth when not set.
func (l Limits) requestBurst() int64 {
	if l.RequestBurst > 0 {
		return l.RequestBurst
	}
	return max(l.RequestRate, 1)
}
