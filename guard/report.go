package main

import (
	"context"
	"encoding/json"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Each replica publishes what it knows of the tenant's usage for the operator, which reports it in the
// EtcdStorage's status: one small JSON record per replica in the core, outside every tenant prefix,
// attached to a lease of the replica's own so that it disappears with the replica. It is written only
// when its content changes, at most once per reportEvery.

const (
	usageReportRoot = "\x00etcdproxy-guard/usage"
	reportEvery     = 5 * time.Second
	reportTTL       = 60 // seconds
)

// usageReportKey is the core key of one replica's record; the operator reads the prefix
// usageReportRoot + prefix (one key per replica).
func usageReportKey(prefix, replica string) string {
	return usageReportRoot + prefix + replica
}

// usageReport is the record; field names are read by the operator (plugins/module_utils/etcdproxy_usage.py).
type usageReport struct {
	Bytes       int64        `json:"bytes"`
	Keys        int64        `json:"keys"`
	Revision    int64        `json:"revision"`
	Watches     int64        `json:"watches"`
	LastRefusal *refusalNote `json:"lastRefusal,omitempty"`
	MeasuredAt  time.Time    `json:"measuredAt"`
}

func (b *budget) report() (usageReport, bool) {
	u := b.usage.Snapshot()
	return usageReport{Bytes: u.Bytes, Keys: u.Keys, Revision: u.Revision, Watches: b.watches.Load(),
		LastRefusal: b.last.Load(), MeasuredAt: b.now().UTC().Truncate(time.Second)}, u.Synced
}

// publish writes the replica's record whenever it changed, until ctx ends. kv and lease are the
// un-namespaced core client's.
func (b *budget) publish(ctx context.Context, kv clientv3.KV, lease clientv3.Lease, replica string, lg *zap.Logger) {
	key := usageReportKey(b.prefix, replica)
	var leaseID clientv3.LeaseID
	var lost chan struct{} // closed when the keep-alive ends (core out of reach longer than the TTL)
	var last usageReport
	for ctx.Err() == nil {
		sleepCtx(ctx, reportEvery)
		rep, synced := b.report()
		if !synced {
			continue
		}
		if lost != nil {
			select {
			case <-lost:
				lost, leaseID = nil, 0
			default:
			}
		}
		if lost != nil && sameReport(rep, last) {
			continue
		}
		if lost == nil {
			g, err := lease.Grant(ctx, reportTTL)
			if err != nil {
				lg.Warn("usage report lease", zap.Error(err))
				continue
			}
			alive, err := lease.KeepAlive(ctx, g.ID)
			if err != nil {
				continue
			}
			leaseID, lost = g.ID, make(chan struct{})
			go func(alive <-chan *clientv3.LeaseKeepAliveResponse, lost chan struct{}) {
				for range alive { //nolint:revive // drain, or the client drops responses with a warning
				}
				close(lost)
			}(alive, lost)
		}
		body, _ := json.Marshal(rep)
		if _, err := kv.Put(ctx, key, string(body), clientv3.WithLease(leaseID)); err != nil {
			lg.Warn("usage report", zap.Error(err))
			continue
		}
		last = rep
	}
}

func sameReport(a, b usageReport) bool {
	a.MeasuredAt, b.MeasuredAt = time.Time{}, time.Time{}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
