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
	// leasesEvery: how often a replica counts the tenant's leases for its record (they expire without an
	// event, so only a count sees it): 500 tenants × 3 replicas make 50 count-only reads a second.
	leasesEvery = 30 * time.Second
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
	Leases      int64        `json:"leases"` // live leases of the tenant in the core (all replicas')
	LastRefusal *refusalNote `json:"lastRefusal,omitempty"`
	MeasuredAt  time.Time    `json:"measuredAt"`
}

func (b *budget) report() (usageReport, bool) {
	u := b.usage.Snapshot()
	return usageReport{Bytes: u.Bytes, Keys: u.Keys, Revision: u.Revision, Watches: b.watches.Load(),
		LastRefusal: b.last.Load(), MeasuredAt: b.now().UTC().Truncate(time.Second)}, u.Synced
}

// publish writes the replica's record as soon as the tenant's usage is first known, then whenever it
// changed, at most once per reportEvery, until ctx ends. kv and lease are the un-namespaced core client's;
// leases counts the tenant's live leases in the core, at most once per leasesEvery.
// The first attempt, written or not, sets b.published: /readyz waits for it, so the reconcile that finds
// the endpoint available also finds a record for the status (and a core refusing writes cannot hold the
// replica unready).
func (b *budget) publish(ctx context.Context, kv clientv3.KV, lease clientv3.Lease, replica string,
	leases func(context.Context) (int64, error), lg *zap.Logger) {
	select {
	case <-b.usage.first:
	case <-ctx.Done():
		return
	}
	r := &reporter{key: usageReportKey(b.prefix, replica), kv: kv, lease: lease, leases: leases, lg: lg}
	for ctx.Err() == nil {
		r.write(ctx, b)
		b.published.Store(true)
		sleepCtx(ctx, reportEvery)
	}
}

// reporter is one replica's record in the core and the lease it is attached to.
type reporter struct {
	key     string
	kv      clientv3.KV
	lease   clientv3.Lease
	leases  func(context.Context) (int64, error)
	counted time.Time // when leases last answered, and what
	count   int64
	lg      *zap.Logger
	leaseID clientv3.LeaseID
	lost    chan struct{} // closed when the keep-alive ends (core out of reach longer than the TTL)
	last    usageReport
}

// write puts the record if it changed since the last put (or its lease was lost), granting a lease first
// when there is none.
func (r *reporter) write(ctx context.Context, b *budget) {
	rep, synced := b.report()
	if !synced {
		return
	}
	tctx, cancel := context.WithTimeout(ctx, reportEvery)
	defer cancel()
	if now := b.now(); r.leases != nil && now.Sub(r.counted) >= leasesEvery {
		if n, err := r.leases(tctx); err == nil {
			r.count, r.counted = n, now
		}
	}
	rep.Leases = r.count
	if r.lost != nil {
		select {
		case <-r.lost:
			r.lost, r.leaseID = nil, 0
		default:
		}
	}
	if r.lost != nil && sameReport(rep, r.last) {
		return
	}
	if r.lost == nil {
		g, err := r.lease.Grant(tctx, reportTTL)
		if err != nil {
			r.lg.Warn("usage report lease", zap.Error(err))
			return
		}
		alive, err := r.lease.KeepAlive(ctx, g.ID)
		if err != nil {
			return
		}
		r.leaseID, r.lost = g.ID, make(chan struct{})
		go func(alive <-chan *clientv3.LeaseKeepAliveResponse, lost chan struct{}) {
			for range alive { //nolint:revive // drain, or the client drops responses with a warning
			}
			close(lost)
		}(alive, r.lost)
	}
	body, _ := json.Marshal(rep)
	if _, err := r.kv.Put(tctx, r.key, string(body), clientv3.WithLease(r.leaseID)); err != nil {
		r.lg.Warn("usage report", zap.Error(err))
		return
	}
	r.last = rep
}

func sameReport(a, b usageReport) bool {
	a.MeasuredAt, b.MeasuredAt = time.Time{}, time.Time{}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
