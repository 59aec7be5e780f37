package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// budget enforces one tenant's amounts: the core's headroom, the tenant's storage and key limits, its
// write and request rates and its open watches. Every refusal is RESOURCE_EXHAUSTED with a message
// naming the limit (the spec field, or the core's quota). Reads and deletes are never refused for
// amount, except by the request rate, so a tenant at its limit can always clean up.
type budget struct {
	prefix   string
	limits   Limits
	usage    *usage
	core     *headroom
	writes   *rate.Limiter // nil: unlimited
	requests *rate.Limiter // nil: unlimited
	watches  atomic.Int64
	streams  atomic.Int64           // Watch streams open (each one a stream to the core)
	grants   chan struct{}          // one LeaseGrant at a time on this replica (AdmitLease)
	reads    *semaphore.Weighted    // bytes of ranges in flight to the core (AdmitRead); nil: unlimited
	inFlight atomic.Int64           // bytes of ranges in flight, for the metric
	pages    atomic.Int64           // pages read for ranges larger than the limit (pages.go)
	revision atomic.Int64           // the newest core revision seen in an answer (SawRevision)
	limited  *prometheus.CounterVec // label: reason
	last     atomic.Pointer[refusalNote]
	now      func() time.Time

	published atomic.Bool // this replica's first usage record was attempted (report.go)
}

// refusalNote is the latest refusal, published for the operator's status.
type refusalNote struct {
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// maxThrottleWait: a call over a rate waits for its turn up to this long, then is refused.
const maxThrottleWait = 250 * time.Millisecond

func newBudget(prefix string, lim Limits, maxRequestBytes int, u *usage, core *headroom) *budget {
	b := &budget{prefix: prefix, limits: lim, usage: u, core: core, now: time.Now, grants: make(chan struct{}, 1),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcdproxy_guard_limited_total",
			Help: "Calls refused with RESOURCE_EXHAUSTED, by the limit that refused them.",
		}, []string{"reason"})}
	for _, r := range refusalReasons {
		b.limited.WithLabelValues(r)
	}
	if lim.WriteRate > 0 {
		b.writes = rate.NewLimiter(rate.Limit(lim.WriteRate), int(lim.writeBurst(maxRequestBytes)))
	}
	if lim.RequestRate > 0 {
		b.requests = rate.NewLimiter(rate.Limit(lim.RequestRate), int(lim.requestBurst()))
	}
	if lim.ReadBytesInFlight > 0 {
		b.reads = semaphore.NewWeighted(lim.ReadBytesInFlight)
	}
	return b
}

func (b *budget) refuse(reason, msg string) error {
	b.limited.WithLabelValues(reason).Inc()
	b.last.Store(&refusalNote{Reason: reason, Message: msg, At: b.now().UTC().Truncate(time.Second)})
	return status.Error(codes.ResourceExhausted, fmt.Sprintf("etcdproxy: tenant %s: %s", b.prefix, msg))
}

// take waits for n tokens of l for at most maxThrottleWait; false if that is not enough.
func take(ctx context.Context, l *rate.Limiter, n int, now time.Time) bool {
	r := l.ReserveN(now, n)
	if !r.OK() {
		return false
	}
	d := r.DelayFrom(now)
	if d > maxThrottleWait {
		r.CancelAt(now)
		return false
	}
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			r.Cancel()
			return false
		}
	}
	return true
}

// AdmitCall charges one call to the request rate.
func (b *budget) AdmitCall(ctx context.Context) error {
	return b.admitCalls(ctx, 1, "")
}

// admitCalls charges n calls to the request rate; why says what made one call cost n.
func (b *budget) admitCalls(ctx context.Context, n int64, why string) error {
	if b.requests == nil || take(ctx, b.requests, int(n), b.now()) {
		return nil
	}
	return b.refuse(reasonRequestRate, fmt.Sprintf("over its request rate of %d/s with a burst of %d "+
		"(spec.limits.requestsPerSecond, spec.limits.requestBurst)%s; retry later",
		b.limits.RequestRate, b.limits.requestBurst(), why))
}

// revisionsPerCall: a watch created at an older revision is charged one call per this many revisions
// it starts back. etcd catches a new watcher up by reading every change in the core since its start
// revision — every key's, the main cluster's and other tenants' too — under its watch store's lock.
// Measured (docs/guard.md): one client creating and cancelling watches 50 000 revisions back at the
// default rate took the core's put p99 from 1.5 to 8.2 ms; charged, 1.46 ms. An API server's watches
// start at the revision it just listed, a few revisions back: one call.
const revisionsPerCall = 100

// SawRevision keeps the newest core revision an answer to the tenant carried (resp: any etcd response).
func (b *budget) SawRevision(resp any) {
	h, ok := resp.(interface{ GetHeader() *pb.ResponseHeader })
	if !ok || h.GetHeader() == nil {
		return
	}
	rev := h.GetHeader().Revision
	for {
		cur := b.revision.Load()
		if rev <= cur || b.revision.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// watchCost is what creating w is charged to the request rate: one call, and one more per
// revisionsPerCall revisions it starts before the newest core revision seen (at most the burst, which
// a single call can never exceed).
func (b *budget) watchCost(w *pb.WatchCreateRequest) (int64, string) {
	back := b.revision.Load() - w.StartRevision
	if w.StartRevision <= 0 || back < revisionsPerCall {
		return 1, ""
	}
	n := min(1+back/revisionsPerCall, b.limits.requestBurst())
	return n, fmt.Sprintf(" (a watch from revision %d, %d revisions back, makes the core read that history "+
		"and counts as %d calls)", w.StartRevision, back, n)
}

// kvSize is one put as the tenant sent it: key (without the prefix) and key+value bytes.
type kvSize struct {
	key  string
	size int64
}

// writeOf measures what a request may write: its puts (both branches of a Txn, at any depth), the
// bytes they carry (the larger Txn branch), and etcd's cost estimate of its database growth.
func writeOf(req any, prefix string) (puts []kvSize, written, cost int64) {
	var branch func(ops []*pb.RequestOp) (int64, int64)
	branch = func(ops []*pb.RequestOp) (w, c int64) {
		for _, op := range ops {
			if p := op.GetRequestPut(); p != nil {
				size := int64(len(p.Key) + len(p.Value))
				puts = append(puts, kvSize{string(p.Key), size})
				w += size
				c += size + int64(len(prefix)) + kvOverhead
			}
			if t := op.GetRequestTxn(); t != nil {
				sw, sc := branch(t.Success)
				fw, fc := branch(t.Failure)
				w, c = w+max(sw, fw), c+max(sc, fc)
			}
		}
		return w, c
	}
	switch r := req.(type) {
	case *pb.PutRequest:
		size := int64(len(r.Key) + len(r.Value))
		return []kvSize{{string(r.Key), size}}, size, size + int64(len(prefix)) + kvOverhead
	case *pb.TxnRequest:
		sw, sc := branch(r.Success)
		fw, fc := branch(r.Failure)
		return puts, max(sw, fw), max(sc, fc)
	case *pb.LeaseGrantRequest:
		return nil, 0, leaseOverhead
	}
	return nil, 0, 0
}

// admitted is a write let through, for Settle once the core answered.
type admitted struct {
	held *reservation // the tenant's storage and keys it reserved (nil: none)
	cost int64        // its growth of the core's database, counted by the headroom
}

// AdmitWrite decides a request that may grow the database. What it returns is settled by Settle with the
// response once the call is done (nil: nothing to settle).
func (b *budget) AdmitWrite(ctx context.Context, req any) (*admitted, error) {
	puts, written, cost := writeOf(req, b.prefix)
	if cost == 0 {
		return nil, nil
	}
	now := b.now()
	var held *reservation
	if len(puts) > 0 {
		var reason, msg string
		held, reason, msg = b.usage.Reserve(puts, b.limits, now)
		if msg != "" {
			return nil, b.refuse(reason, msg)
		}
	}
	if b.writes != nil && written > 0 && !take(ctx, b.writes, int(written), now) {
		b.usage.Settle(held, 0)
		return nil, b.refuse(reasonWriteRate, fmt.Sprintf("over its write rate of %s/s with a burst of %s "+
			"(spec.limits.writeBytesPerSecond, spec.limits.writeBurst); this write carries %s; retry later",
			bytesText(b.limits.WriteRate), bytesText(int64(b.writes.Burst())), bytesText(written)))
	}
	if msg := b.core.Admit(cost); msg != "" {
		b.usage.Settle(held, 0)
		return nil, b.refuse(reasonCoreSpace, msg)
	}
	return &admitted{held: held, cost: cost}, nil
}

// Settle ends an admitted write: its core growth counts as applied, and its reservation ends at the
// revision the watch will show for it if the call wrote something, at once otherwise.
func (b *budget) Settle(w *admitted, resp any, err error) {
	if w == nil {
		return
	}
	b.core.Answered(w.cost)
	held := w.held
	if held == nil {
		return
	}
	var rev int64
	if err == nil {
		switch r := resp.(type) {
		case *pb.PutResponse:
			rev = r.GetHeader().GetRevision()
		case *pb.TxnResponse:
			rev = r.GetHeader().GetRevision() // a Txn that wrote nothing is released by expiry or next event
		}
	}
	b.usage.Settle(held, rev)
}

// readBytesOf bounds what a request reads from the core: its range, or the ranges of a Txn (both
// branches, at any depth; only one branch runs, so the larger one counts). Count-only ranges read no
// values. 0 when reads are not limited (nothing to estimate for).
func (b *budget) readBytesOf(req any) int64 {
	if b.reads == nil {
		return 0
	}
	rangeBytes := func(r *pb.RangeRequest) int64 {
		if r.CountOnly {
			return 0
		}
		return b.usage.ReadBytes(r.Key, r.RangeEnd, r.Limit, r.Revision)
	}
	var branch func(ops []*pb.RequestOp) int64
	branch = func(ops []*pb.RequestOp) (n int64) {
		for _, op := range ops {
			if r := op.GetRequestRange(); r != nil {
				n = plus(n, rangeBytes(r))
			}
			if t := op.GetRequestTxn(); t != nil {
				n = plus(n, max(branch(t.Success), branch(t.Failure)))
			}
		}
		return n
	}
	switch r := req.(type) {
	case *pb.RangeRequest:
		return rangeBytes(r)
	case *pb.TxnRequest:
		return max(branch(r.Success), branch(r.Failure))
	}
	return 0
}

// plus adds two read sizes, unbounded if either is (or if the sum would overflow).
func plus(a, b int64) int64 {
	if a > unbounded-b {
		return unbounded
	}
	return a + b
}

// AdmitRead holds a read of n bytes (readBytesOf) until the bytes of reads in flight to the core from this
// replica, with its own, stay within spec.limits.readBytesInFlight; done gives them back once the core
// answered. The core builds
// each answer whole in its memory (several times its size, measured: docs/guard.md), so without a bound
// a few concurrent ranges of a large tenant could take the core's memory. Reads are held, not refused:
// they wait in order, up to the caller's deadline. A Range larger than the limit is read in pages
// (pages.go); a Txn cannot be (its reads are one revision with its writes), so a Txn that would read more
// than the limit is refused. Without a pager (unit tests) a larger Range waits to run alone.
func (b *budget) AdmitRead(ctx context.Context, req any, n int64) (done func(), err error) {
	if b.reads == nil {
		return func() {}, nil
	}
	if _, txn := req.(*pb.TxnRequest); txn && n == unbounded {
		return nil, b.refuse(reasonReads, "this Txn reads several keys at an older revision without a limit, "+
			"which spec.limits.readBytesInFlight cannot bound; read that range with a Range call, which is "+
			"answered in pages")
	} else if txn && n > b.limits.ReadBytesInFlight {
		return nil, b.refuse(reasonReads, fmt.Sprintf("this Txn would read %s from the core at once, more than "+
			"spec.limits.readBytesInFlight (%s); read that range with a Range call, which is answered in pages",
			bytesText(n), bytesText(b.limits.ReadBytesInFlight)))
	}
	return b.holdRead(ctx, min(n, b.limits.ReadBytesInFlight))
}

// holdRead waits until n more bytes fit in the reads in flight (n at most the limit); done gives them back.
func (b *budget) holdRead(ctx context.Context, n int64) (done func(), err error) {
	if b.reads == nil || n == 0 {
		return func() {}, nil
	}
	if err := b.reads.Acquire(ctx, n); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	b.inFlight.Add(n)
	return func() { b.inFlight.Add(-n); b.reads.Release(n) }, nil
}

// AdmitLease lets one LeaseGrant through if the tenant's live leases, as count reads them from the core,
// are below spec.limits.leases; done must be called once the grant and its marker are written (or
// failed). Leases cost the core memory whatever their keys (measured, docs/guard.md): without a bound,
// the request rate alone would let a tenant fill the core's memory long before its space quota.
// Grants on one replica go one at a time, so each one's count includes the grant before it; replicas
// of one tenant can overshoot together by at most one grant each.
func (b *budget) AdmitLease(ctx context.Context, count func(context.Context) (int64, error)) (done func(), err error) {
	if b.limits.Leases == 0 {
		return func() {}, nil
	}
	select {
	case b.grants <- struct{}{}:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	done = func() { <-b.grants }
	n, err := count(ctx)
	if err != nil {
		done()
		return nil, status.Errorf(codes.Unavailable, "counting the tenant's leases in the core etcd, retry: %v", err)
	}
	if n >= b.limits.Leases {
		done()
		return nil, b.refuse(reasonLeases, fmt.Sprintf("lease limit reached: %d of %d leases (spec.limits.leases); "+
			"a lease counts until its TTL ends, so wait for some to end or raise the limit", n, b.limits.Leases))
	}
	return done, nil
}

// AdmitWatch counts one more open watch on this replica, charged by how far back it starts (watchCost),
// or refuses it.
func (b *budget) AdmitWatch(ctx context.Context, w *pb.WatchCreateRequest) error {
	n, why := b.watchCost(w)
	return b.admitOpen(ctx, &b.watches, "watches", n, why)
}

// AdmitStream counts one more Watch stream on this replica, or refuses it. Each is a stream of its own
// to the core (watchServer), which costs the core even without a watch on it: streams are held to the
// same limit as watches.
func (b *budget) AdmitStream(ctx context.Context) error {
	return b.admitOpen(ctx, &b.streams, "watch streams", 1, "")
}

// ReleaseStream gives back what AdmitStream counted, when the stream ends.
func (b *budget) ReleaseStream() {
	b.streams.Add(-1)
}

// admitOpen counts one more of what open counts (held to spec.limits.watches), or refuses it.
func (b *budget) admitOpen(ctx context.Context, open *atomic.Int64, what string, calls int64, why string) error {
	if err := b.admitCalls(ctx, calls, why); err != nil {
		return err
	}
	for {
		n := open.Load()
		if b.limits.Watches > 0 && n >= b.limits.Watches {
			return b.refuse(reasonWatches, fmt.Sprintf("%d %s are open through this endpoint replica, "+
				"its limit (spec.limits.watches); close some or raise the limit", n, what))
		}
		if open.CompareAndSwap(n, n+1) {
			return nil
		}
	}
}

// watchStream counts the watches of one Watch stream: a create request is admitted (or answered with a
// cancellation naming the limit, as etcd answers a watch it cannot create) and every cancellation the
// proxy sends gives one back. The watches left when the stream ends are given back too.
type watchStream struct {
	grpc.ServerStream
	b    *budget
	mu   sync.Mutex // SendMsg is not safe from two goroutines: the proxy's and a refusal's
	open atomic.Int64
}

func (s *watchStream) RecvMsg(m any) error {
	for {
		if err := s.ServerStream.RecvMsg(m); err != nil {
			return err
		}
		req, ok := m.(*pb.WatchRequest)
		if !ok || req.GetCreateRequest() == nil {
			return nil
		}
		err := s.b.AdmitWatch(s.Context(), req.GetCreateRequest())
		if err == nil {
			s.open.Add(1)
			return nil
		}
		st, _ := status.FromError(err)
		s.mu.Lock()
		sendErr := s.ServerStream.SendMsg(&pb.WatchResponse{Header: &pb.ResponseHeader{}, WatchId: -1,
			Created: true, Canceled: true, CancelReason: st.Message()})
		s.mu.Unlock()
		if sendErr != nil {
			return sendErr
		}
	}
}

func (s *watchStream) SendMsg(m any) error {
	s.b.SawRevision(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp, ok := m.(*pb.WatchResponse); ok && resp.Canceled && s.open.Load() > 0 {
		s.open.Add(-1)
		s.b.watches.Add(-1)
	}
	return s.ServerStream.SendMsg(m)
}

func (s *watchStream) done() {
	s.b.watches.Add(-s.open.Swap(0))
}

// gauges are the budget's metrics: the tenant's usage, its limits and the core's size as this replica
// knows them. Label values are fixed (limit names), never taken from requests.
func (b *budget) gauges() []prometheus.Collector {
	g := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	out := []prometheus.Collector{
		g("etcdproxy_guard_tenant_bytes", "Live bytes (keys + values) under the tenant's prefix.",
			func() float64 { return float64(b.usage.Snapshot().Bytes) }),
		g("etcdproxy_guard_tenant_keys", "Live keys under the tenant's prefix.",
			func() float64 { return float64(b.usage.Snapshot().Keys) }),
		g("etcdproxy_guard_watches", "Watches open through this replica.",
			func() float64 { return float64(b.watches.Load()) }),
		g("etcdproxy_guard_read_bytes_in_flight", "Bytes of reads this replica waits for from the core (estimated).",
			func() float64 { return float64(b.inFlight.Load()) }),
		g("etcdproxy_guard_core_db_size_bytes", "The core's database size as this replica estimates it: the largest member's last poll, plus "+
			"writes it may not hold yet.",
			func() float64 { return float64(b.core.State().Size) }),
		g("etcdproxy_guard_core_quota_bytes", "The core's space quota.",
			func() float64 { return float64(b.core.State().Quota) }),
		g("etcdproxy_guard_core_ceiling_bytes", "Database size above which tenant writes that grow it are refused.",
			func() float64 { return float64(b.core.State().Ceiling) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "etcdproxy_guard_range_pages_total",
			Help: "Pages read from the core for ranges larger than spec.limits.readBytesInFlight."},
			func() float64 { return float64(b.pages.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "etcdproxy_guard_core_status_polls_total",
			Help: "Maintenance/Status calls this replica made to learn the core's size."}, func() float64 {
			b.core.mu.Lock()
			defer b.core.mu.Unlock()
			return float64(b.core.polls)
		}),
	}
	limit := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "etcdproxy_guard_limit",
		Help: "The tenant's limits (0: none), by spec field."}, []string{"limit"})
	for _, f := range limitFields {
		limit.WithLabelValues(strings.TrimPrefix(f.spec, "spec.limits.")).Set(float64(f.get(b.limits)))
	}
	return append(out, limit)
}
