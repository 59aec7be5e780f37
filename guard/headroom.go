package main

import (
	"context"
	"fmt"
	"github.com/coreos/go-semver/semver"
	"math/rand/v2"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The core etcd raises the cluster-wide NOSPACE alarm when a write would take a member's database file
// (backend size, the `dbSize` of Status) to its quota (etcd's quota.go: size + cost >= quota). headroom
// keeps tenant writes under a lower ceiling, quota × (1 − reserve), so the reserve is left to the main
// cluster: a tenant write is refused when the largest member's last known size, plus the tenant's writes
// that size may not hold yet, plus the write's cost reaches the ceiling.
//
// Which writes a size may not hold: etcd answers a write once applied, but writes its database in batches
// (every --backend-batch-interval, 100 ms by default) and Status reports the size as of the last batch
// committed. Measured with 1 MB puts: the reported size grew in steps of 5-7 MiB about every 100 ms, and
// forgetting the writes at each poll let tenants take 30.7 of a 32 MiB core whose ceiling was 25.6 MiB.
// So a write counts from its admission on this replica; once it is known applied (its call answered, or
// the usage watch showed it: every write of the tenant, through any replica, so replicas of one tenant
// cannot overshoot together) it counts until a poll sent coreCommitLag after that. A replica's own writes
// are counted twice in that time (answered and seen), which errs on the safe side.
//
// Writes the replica cannot know of (other tenants', the main cluster's) are extrapolated: each member's
// size is taken to go on growing as fast as it grew between its last two polls, from the last poll until
// coreCommitLag from now, which covers growth that goes on over several polls. A burst of several tenants
// within one poll is not covered (measured, two tenants' 8 MiB bursts: 27.8-29.7 MiB of a 32 MiB test
// core whose ceiling was 25.6 MiB, with and without it): that is what the reserve is for.
//
// Cost of knowing the size: one Maintenance/Status call per poll, to one member at a time (round robin).
// The poll interval follows the room left: the time the core would need to fill it at coreFillRate,
// between pollMin and pollMax, with jitter (only shorter) so that replicas spread out. An answer shows the
// core as it was up to coreCommitLag before: what several tenants write in that time, unseen by each
// other's replicas, can pass the ceiling; the reserve is for that (docs/guard.md).
// Over the ceiling (tenant writes refused, so tenants add nothing) it polls every pollOver to notice when
// the core has room again.
const (
	pollMin      = 100 * time.Millisecond
	pollMax      = 30 * time.Second
	pollOver     = 5 * time.Second
	coreFillRate = 64 << 20 // bytes/s: faster than an etcd member commits on this class of machine
	// etcd's own estimate of what a request adds to the database (server/storage/quota.go).
	kvOverhead    = 256
	leaseOverhead = 64
	// coreCommitLag: how long after a write is applied the core's reported size may still leave it out,
	// etcd's batch interval (100 ms) and a slow commit with room to spare. A core run with a longer
	// --backend-batch-interval than ~0.5 s needs a larger reserve (docs/guard.md).
	coreCommitLag = time.Second
	// appliedStep: applied writes are counted in steps of this much time, at most appliedSteps of them
	// (more than pollMax + coreCommitLag holds; beyond, while polls fail, the oldest two are merged, which
	// only keeps a write counted longer).
	appliedStep  = 50 * time.Millisecond
	appliedSteps = 1000
	// defaultCoreQuota is etcd's default --quota-backend-bytes, used when Status reports no quota
	// (etcd before 3.6, or 3.6 running without the flag).
	defaultCoreQuota = 2 << 30
)

type headroom struct {
	reserve       float64 // share of the core quota kept for the main cluster (0.2 = 20%)
	fallbackQuota int64   // when Status reports none

	mu       sync.Mutex
	sizes    map[string]polled          // endpoint -> its last poll
	versions map[string]*semver.Version // endpoint -> etcd version at its last poll
	quota    int64                      // as reported (0: unknown)
	applied  []growth                   // growth known applied, oldest first, in steps of appliedStep
	counted  int64                      // what the last known size may not hold: applied, and in flight
	sampled  bool
	polls    int64 // Status calls made, for the metric
	now      func() time.Time
}

// polled is a member's size (and size in use) as a Status call sent at sent reported it, and how fast it
// grew since the poll before.
type polled struct {
	size, inUse int64
	sent        time.Time
	growth      float64 // bytes per second, 0 if it shrank
}

// growth is the cost of the writes known applied before until.
type growth struct {
	until time.Time
	cost  int64
}

func newHeadroom(reservePercent int, fallbackQuota int64) *headroom {
	if fallbackQuota <= 0 {
		fallbackQuota = defaultCoreQuota
	}
	return &headroom{reserve: float64(reservePercent) / 100, fallbackQuota: fallbackQuota,
		sizes: map[string]polled{}, versions: map[string]*semver.Version{}, now: time.Now}
}

// CoreState is what the replica knows of the core's size.
type CoreState struct {
	Size, InUse, Quota, Ceiling int64
	Sampled                     bool
}

func (h *headroom) stateLocked() CoreState {
	quota := h.quota
	if quota <= 0 {
		quota = h.fallbackQuota
	}
	var size, inUse int64
	now := h.now()
	for _, p := range h.sizes {
		size = max(size, p.size+int64(p.growth*now.Add(coreCommitLag).Sub(p.sent).Seconds()))
		inUse = max(inUse, p.inUse)
	}
	return CoreState{Size: size + h.counted, InUse: inUse, Quota: quota,
		Ceiling: int64(float64(quota) * (1 - h.reserve)), Sampled: h.sampled}
}

func (h *headroom) State() CoreState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stateLocked()
}

// Admit decides a write that grows the database by cost bytes (etcd's estimate); "" means go ahead,
// and the cost counts as in flight until Answered. Otherwise the message says why.
func (h *headroom) Admit(cost int64) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.stateLocked()
	if !s.Sampled {
		return "the shared core etcd's size is not known yet (no Status answer from its members); retry shortly"
	}
	if s.Size+cost >= s.Ceiling {
		return fmt.Sprintf("the shared core etcd is near its space quota: database about %s of %s, tenants may "+
			"grow it to %s (%d%% is kept for the main cluster); writes that grow it are refused until the "+
			"core's admin compacts and defragments it (%s in use); reads and deletes work",
			bytesText(s.Size), bytesText(s.Quota), bytesText(s.Ceiling), int(h.reserve*100+0.5), bytesText(s.InUse))
	}
	h.counted += cost
	return ""
}

// Answered moves an admitted write's cost from in flight to applied (or possibly applied: a call that
// failed may still have written).
func (h *headroom) Answered(cost int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counted -= cost
	h.appliedLocked(cost)
}

// Seen counts a tenant write shown by the usage watch (etcd's cost estimate of it) as applied now.
func (h *headroom) Seen(cost int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.appliedLocked(cost)
}

func (h *headroom) appliedLocked(cost int64) {
	at := h.now()
	if n := len(h.applied); n > 0 && at.Before(h.applied[n-1].until) {
		h.applied[n-1].cost += cost
	} else {
		if n >= appliedSteps {
			h.applied[1].cost += h.applied[0].cost
			h.applied = h.applied[1:]
		}
		h.applied = append(h.applied, growth{until: at.Truncate(appliedStep).Add(appliedStep), cost: cost})
	}
	h.counted += cost
}

// Version is the lowest etcd version among the core members polled so far ("" before the first answer):
// what the core as a whole supports.
func (h *headroom) Version() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var lowest *semver.Version
	for _, v := range h.versions {
		if lowest == nil || v.LessThan(*lowest) {
			lowest = v
		}
	}
	if lowest == nil {
		return ""
	}
	return lowest.String()
}

// record takes a member's Status answer to a call sent at sent: writes applied coreCommitLag before it are
// in the size reported.
func (h *headroom) record(endpoint string, size, inUse, quota int64, version string, sent time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := polled{size: size, inUse: inUse, sent: sent}
	if last, ok := h.sizes[endpoint]; ok && size > last.size && sent.After(last.sent) {
		p.growth = float64(size-last.size) / sent.Sub(last.sent).Seconds()
	}
	h.sizes[endpoint] = p
	if v, err := semver.NewVersion(version); err == nil {
		h.versions[endpoint] = v
	}
	if quota > 0 {
		h.quota = quota
	}
	held := sent.Add(-coreCommitLag)
	dropped := 0
	for _, g := range h.applied {
		if g.until.After(held) {
			break
		}
		h.counted -= g.cost
		dropped++
	}
	h.applied = h.applied[dropped:]
	h.sampled = true
}

// next is how long to wait before the next poll, given the room left under the ceiling.
func (h *headroom) next() time.Duration {
	s := h.State()
	room := s.Ceiling - s.Size
	d := pollOver
	if room > 0 {
		d = time.Duration(float64(room) / coreFillRate * float64(time.Second))
	}
	d = min(max(d, pollMin), pollMax)
	return time.Duration(float64(d) * (0.8 + 0.2*rand.Float64())) //nolint:gosec // jitter, never later
}

// poll asks the core members for their size in turn until ctx ends.
func (h *headroom) poll(ctx context.Context, m clientv3.Maintenance, endpoints []string, lg *zap.Logger) {
	for i := 0; ctx.Err() == nil; i++ {
		ep := endpoints[i%len(endpoints)]
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		sent := h.now()
		resp, err := m.Status(sctx, ep)
		cancel()
		h.mu.Lock()
		h.polls++
		h.mu.Unlock()
		var wait time.Duration
		if err != nil {
			lg.Warn("core etcd status", zap.String("endpoint", ep), zap.Error(err))
			wait = pollMin
		} else {
			h.record(ep, resp.DbSize, resp.DbSizeInUse, resp.DbSizeQuota, resp.Version, sent)
			wait = h.next()
		}
		sleepCtx(ctx, wait)
	}
}

// bytesText prints a byte count the way Kubernetes quantities read (Ki, Mi, Gi).
func bytesText(n int64) string {
	units := []string{"", "Ki", "Mi", "Gi", "Ti"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d", n)
	}
	return fmt.Sprintf("%.1f%s", f, units[i])
}
