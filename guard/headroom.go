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
// cluster: a tenant write is refused when the largest member's last known size, plus what this replica
// forwarded since, plus the write's cost reaches the ceiling.
//
// Between polls the estimate grows by what this replica forwarded and by every write of the tenant the
// usage watch shows (through any replica; a replica's own writes are counted twice until the next poll,
// which errs on the safe side), so replicas of one tenant cannot overshoot together.
//
// Cost of knowing the size: one Maintenance/Status call per poll, to one member at a time (round robin).
// The poll interval follows the room left: the time the core would need to fill it at coreFillRate,
// between pollMin and pollMax, with jitter so that replicas spread out. Over the ceiling (tenant writes
// refused, so tenants add nothing) it polls every pollOver to notice when the core has room again.
const (
	pollMin      = 100 * time.Millisecond
	pollMax      = 30 * time.Second
	pollOver     = 5 * time.Second
	coreFillRate = 64 << 20 // bytes/s: faster than an etcd member commits on this class of machine
	// etcd's own estimate of what a request adds to the database (server/storage/quota.go).
	kvOverhead    = 256
	leaseOverhead = 64
	// defaultCoreQuota is etcd's default --quota-backend-bytes, used when Status reports no quota
	// (etcd before 3.6, or 3.6 running without the flag).
	defaultCoreQuota = 2 << 30
)

type headroom struct {
	reserve       float64 // share of the core quota kept for the main cluster (0.2 = 20%)
	fallbackQuota int64   // when Status reports none

	mu        sync.Mutex
	sizes     map[string]int64 // endpoint -> dbSize at its last poll
	inUse     map[string]int64
	versions  map[string]*semver.Version // endpoint -> etcd version at its last poll
	quota     int64                      // as reported (0: unknown)
	forwarded int64                      // growth this replica let through since the last poll
	seen      int64                      // growth of the tenant the usage watch showed since the last poll
	sampled   bool
	polls     int64 // Status calls made, for the metric
}

func newHeadroom(reservePercent int, fallbackQuota int64) *headroom {
	if fallbackQuota <= 0 {
		fallbackQuota = defaultCoreQuota
	}
	return &headroom{reserve: float64(reservePercent) / 100, fallbackQuota: fallbackQuota,
		sizes: map[string]int64{}, inUse: map[string]int64{}, versions: map[string]*semver.Version{}}
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
	for ep, s := range h.sizes {
		size = max(size, s)
		inUse = max(inUse, h.inUse[ep])
	}
	return CoreState{Size: size + h.forwarded + h.seen, InUse: inUse, Quota: quota,
		Ceiling: int64(float64(quota) * (1 - h.reserve)), Sampled: h.sampled}
}

func (h *headroom) State() CoreState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stateLocked()
}

// Admit decides a write that grows the database by cost bytes (etcd's estimate); "" means go ahead,
// and the cost is counted until the next poll. Otherwise the message says why.
func (h *headroom) Admit(cost int64) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.stateLocked()
	if !s.Sampled {
		return "the shared core etcd's size is not known yet (no Status answer from its members); retry shortly"
	}
	if s.Size+cost >= s.Ceiling {
		return fmt.Sprintf("the shared core etcd is near its space quota: database %s of %s, tenants may "+
			"grow it to %s (%d%% is kept for the main cluster); writes that grow it are refused until the "+
			"core's admin compacts and defragments it (%s in use); reads and deletes work",
			bytesText(s.Size), bytesText(s.Quota), bytesText(s.Ceiling), int(h.reserve*100+0.5), bytesText(s.InUse))
	}
	h.forwarded += cost
	return ""
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

func (h *headroom) record(endpoint string, size, inUse, quota int64, version string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sizes[endpoint], h.inUse[endpoint] = size, inUse
	if v, err := semver.NewVersion(version); err == nil {
		h.versions[endpoint] = v
	}
	if quota > 0 {
		h.quota = quota
	}
	h.forwarded, h.seen = 0, 0
	h.sampled = true
}

// Seen counts a tenant write shown by the usage watch (etcd's cost estimate of it).
func (h *headroom) Seen(cost int64) {
	h.mu.Lock()
	h.seen += cost
	h.mu.Unlock()
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
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64())) //nolint:gosec // jitter
}

// poll asks the core members for their size in turn until ctx ends.
func (h *headroom) poll(ctx context.Context, m clientv3.Maintenance, endpoints []string, lg *zap.Logger) {
	for i := 0; ctx.Err() == nil; i++ {
		ep := endpoints[i%len(endpoints)]
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
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
			h.record(ep, resp.DbSize, resp.DbSizeInUse, resp.DbSizeQuota, resp.Version)
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
