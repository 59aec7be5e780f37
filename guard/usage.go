package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// usage follows one tenant's live keys in the core: a paged read of the prefix at one revision, then a
// watch from the next revision. Every replica of the endpoint runs one, so every replica sees every
// write of the tenant, whichever replica forwarded it: the storage and key limits hold across replicas.
// It keeps each key's size (key + value bytes, as the tenant sees them) to account overwrites and deletes.
//
// Writes admitted but not yet seen on the watch are held as reservations, so that a client writing
// faster than the watch reports cannot overshoot through one replica; what other replicas admit in
// the same moment is the bound on overshoot (docs/guard.md).
type usage struct {
	mu        sync.Mutex
	sizes     map[string]int64
	dirs      map[string]dirSize // each directory's ("/registry/pods/"): what a range of it reads
	largest   int64              // the largest key seen since the last full read (a high-water mark)
	forgotten int64              // the largest key of a directory emptied since the last full read
	maxKey    int64              // the largest key the tenant can have written (its largest request)
	bytes     int64
	revision  int64
	loaded    int64 // the revision of the last full read
	synced    bool
	held      []*reservation
	onPut     func(keyLen, valueLen int) // called for every put the watch shows (may be nil)
	first     chan struct{}              // closed when the usage is first synced
	once      sync.Once
}

// reservation is an admitted write's growth, held until the watch shows revision rev (0: not known
// yet) or until it expires.
type reservation struct {
	bytes, keys, rev int64
	expires          time.Time
}

// reservationTTL bounds how long a reservation can outlive a write whose effect the watch never shows
// (a Txn whose compare failed, a put of an unchanged value under a newer revision of other keys).
const reservationTTL = 5 * time.Second

func newUsage(maxKey int64) *usage {
	return &usage{sizes: map[string]int64{}, dirs: map[string]dirSize{}, maxKey: maxKey, first: make(chan struct{})}
}

// Reserve admits a write of puts if the growth it brings stays within the limits (0: unlimited), and
// holds that growth until Settle; otherwise it returns the reason and a message naming the limit. Growth
// and the check are one critical section, so no other write's reservation can slip in between.
func (u *usage) Reserve(puts []kvSize, lim Limits, now time.Time) (*reservation, string, string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.synced {
		return nil, reasonStorage, "the tenant's usage is still being read from the core; retry shortly"
	}
	bytes, keys := u.growthLocked(puts)
	u.expireLocked(now)
	var heldBytes, heldKeys int64
	for _, r := range u.held {
		heldBytes += r.bytes
		heldKeys += r.keys
	}
	if lim.Storage > 0 && bytes > 0 && u.bytes+heldBytes+bytes > lim.Storage {
		return nil, reasonStorage, fmt.Sprintf("storage limit reached: %s of %s used, this write adds %s "+
			"(spec.limits.storage); delete keys or raise the limit", bytesText(u.bytes+heldBytes),
			bytesText(lim.Storage), bytesText(bytes))
	}
	if lim.Keys > 0 && keys > 0 && int64(len(u.sizes))+heldKeys+keys > lim.Keys {
		return nil, reasonKeys, fmt.Sprintf("key limit reached: %d of %d keys, this write adds %d "+
			"(spec.limits.keys); delete keys or raise the limit", int64(len(u.sizes))+heldKeys, lim.Keys, keys)
	}
	r := &reservation{bytes: bytes, keys: keys, expires: now.Add(reservationTTL)}
	u.held = append(u.held, r)
	return r, "", ""
}

// Settle ends a reservation once revision rev is applied (at once if rev is 0 or already applied).
func (u *usage) Settle(r *reservation, rev int64) {
	if r == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if rev == 0 || rev <= u.revision {
		u.dropLocked(r)
		return
	}
	r.rev = rev
}

func (u *usage) dropLocked(r *reservation) {
	for i, h := range u.held {
		if h == r {
			u.held = append(u.held[:i], u.held[i+1:]...)
			return
		}
	}
}

func (u *usage) expireLocked(now time.Time) {
	kept := u.held[:0]
	for _, r := range u.held {
		if now.Before(r.expires) && (r.rev == 0 || r.rev > u.revision) {
			kept = append(kept, r)
		}
	}
	u.held = kept
}

// Snapshot is a consistent view of the tenant's usage.
type Snapshot struct {
	Bytes, Keys, Revision int64
	Synced                bool
}

func (u *usage) Snapshot() Snapshot {
	u.mu.Lock()
	defer u.mu.Unlock()
	return Snapshot{Bytes: u.bytes, Keys: int64(len(u.sizes)), Revision: u.revision, Synced: u.synced}
}

// Growth is what a write would add: bytes (new sizes minus the sizes they replace; never below zero per
// key) and keys that do not exist yet. Keys appearing twice in one request are counted once, with the
// larger value.
func (u *usage) growthLocked(puts []kvSize) (bytes, keys int64) {
	seen := map[string]int64{}
	for _, p := range puts {
		if cur, ok := seen[p.key]; !ok || p.size > cur {
			seen[p.key] = p.size
		}
	}
	for key, size := range seen {
		old, exists := u.sizes[key]
		if !exists {
			keys++
		}
		if size > old {
			bytes += size - old
		}
	}
	return bytes, keys
}

func (u *usage) reset(rev int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sizes = map[string]int64{}
	u.dirs = map[string]dirSize{}
	u.largest = 0
	u.forgotten = 0
	u.bytes = 0
	u.revision = rev
	u.loaded = rev
	u.synced = false
}

func (u *usage) set(key []byte, size int64) {
	k := string(key)
	u.grow(k, size-u.sizes[k], size)
	u.sizes[k] = size
}

func (u *usage) del(key []byte) {
	k := string(key)
	u.grow(k, -u.sizes[k], 0)
	delete(u.sizes, k)
}

// dirSize is what the live keys of one directory hold: their bytes, and the largest key written there
// since the directory was last empty (a high-water mark: deletes do not lower it).
type dirSize struct {
	bytes, largest int64
}

// grow adds delta to the tenant's bytes and to those of every directory the key is in (each prefix of
// the key that ends with "/"), and raises the largest-key marks to size; an emptied directory is forgotten.
func (u *usage) grow(key string, delta, size int64) {
	u.bytes += delta
	u.largest = max(u.largest, size)
	for i := 0; i < len(key); i++ {
		if key[i] != '/' {
			continue
		}
		dir := key[:i+1]
		d := u.dirs[dir]
		if d.bytes += delta; d.bytes > 0 {
			d.largest = max(d.largest, size)
			u.dirs[dir] = d
		} else {
			u.forgotten = max(u.forgotten, d.largest) // a read of the past may still see its keys
			delete(u.dirs, dir)
		}
	}
}

// unbounded is the size of a read that cannot be bounded from the keys the replica follows: a range of
// several keys, without a limit, at a revision older than the replica has followed to (keys deleted or
// shrunk since are not counted any more) or before it has read the tenant's keys. Such a Range is read in
// pages of a bounded number of keys (pager); a Txn holding one is refused.
const unbounded = math.MaxInt64

// ReadBytes is an upper bound of what a range of [key, end) at revision rev (0: the current one) reads
// from the core, keys and values: the size of a single key, of the deepest directory holding the whole
// range, or of every key of the tenant; when limit is set, at most the limit+1 keys etcd reads, each as
// large as the largest there. A read of the past (Past) is bounded by the largest key it can see there:
// one for a single key, limit+1 with a limit, unbounded otherwise.
func (u *usage) ReadBytes(key, end []byte, limit, rev int64) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	past := u.pastLocked(rev)
	if !past && len(end) == 0 { // a GET: every call's path
		return u.sizes[string(key)]
	}
	in := u.coverLocked(key, end)
	if past {
		switch largest := u.keyBoundLocked(in, rev); {
		case len(end) == 0:
			return largest
		case limit > 0:
			return keysOf(limit, largest)
		}
		return unbounded
	}
	if limit > 0 {
		return min(in.bytes, keysOf(limit, in.largest))
	}
	return in.bytes
}

// coverLocked is what the deepest directory holding [key, end) holds (a single key's when end is empty;
// nothing if that directory holds no key now), or the whole tenant's.
func (u *usage) coverLocked(key, end []byte) dirSize {
	k := string(key)
	for i := len(k) - 1; i >= 0; i-- {
		if k[i] != '/' {
			continue
		}
		if dir := k[:i+1]; string(end) <= clientv3.GetPrefixRangeEnd(dir) && string(end) != "\x00" {
			return u.dirs[dir]
		}
	}
	return dirSize{u.bytes, u.largest}
}

// keysOf is what the limit+1 keys etcd reads for a limit hold at size bytes each; limits are the
// client's, so the product saturates instead of overflowing.
func keysOf(limit, size int64) int64 {
	if size > 0 && limit >= math.MaxInt64/size-1 {
		return unbounded
	}
	return (limit + 1) * size
}

// Past says whether a read of [key, end) at rev may see keys the replica no longer counts: rev is older
// than the revision it has followed to, so keys deleted or shrunk since count as they are now (or not at
// all), or the tenant's keys are still being read. KeyBound is then the largest key it can see there.
func (u *usage) Past(key, end []byte, rev int64) (past bool, keyBound int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.pastLocked(rev), u.keyBoundLocked(u.coverLocked(key, end), rev)
}

func (u *usage) pastLocked(rev int64) bool {
	return !u.synced || (rev > 0 && rev < u.revision)
}

// keyBoundLocked is the largest key a read at rev of what in covers can see: from the last full read on,
// the largest key written there (a high-water mark), or in a directory emptied since (forgotten);
// before that read, keys the replica never saw, as large as a request.
func (u *usage) keyBoundLocked(in dirSize, rev int64) int64 {
	if u.synced && rev >= u.loaded {
		return max(in.largest, u.forgotten)
	}
	return u.maxKey
}

// page is one part of a large range: from start to the next page's start, holding bytes of live keys.
type page struct {
	start []byte
	bytes int64
}

// Pages splits [key, end) into consecutive pages of at most limit bytes of the tenant's live keys each (a
// single larger key is a page of its own). The first page starts at key. A key written since, or seen
// by a read at an older revision, falls in whichever page covers it.
func (u *usage) Pages(key, end []byte, limit int64) []page {
	type sized struct {
		key  string
		size int64
	}
	from, to, toEnd := string(key), string(end), string(end) == "\x00"
	var in []sized
	u.mu.Lock()
	for k, size := range u.sizes {
		if k >= from && (toEnd || k < to) {
			in = append(in, sized{k, size})
		}
	}
	u.mu.Unlock()
	sort.Slice(in, func(i, j int) bool { return in[i].key < in[j].key })
	pages := []page{{start: key}}
	for _, kv := range in {
		if cur := pages[len(pages)-1]; cur.bytes > 0 && cur.bytes+kv.size > limit {
			pages = append(pages, page{start: []byte(kv.key)})
		}
		pages[len(pages)-1].bytes += kv.size
	}
	return pages
}

// apply records one watch response's events (all of one revision or more, in order).
func (u *usage) apply(events []*clientv3.Event, rev int64) {
	u.mu.Lock()
	for _, ev := range events {
		if ev.Type == mvccpb.DELETE {
			u.del(ev.Kv.Key)
		} else {
			u.set(ev.Kv.Key, int64(len(ev.Kv.Key)+len(ev.Kv.Value)))
			if u.onPut != nil {
				u.onPut(len(ev.Kv.Key), len(ev.Kv.Value))
			}
		}
	}
	if rev > u.revision {
		u.revision = rev
	}
	u.expireLocked(time.Now())
	u.mu.Unlock()
}

// follow keeps the usage current until ctx ends: a full read, then a watch; again from a full read
// if the watch is cancelled (e.g. its revision was compacted while the core was out of reach).
// kv and w are the tenant's namespaced client: keys arrive without the prefix.
func (u *usage) follow(ctx context.Context, kv clientv3.KV, w clientv3.Watcher, lg *zap.Logger) {
	for ctx.Err() == nil {
		rev, err := u.load(ctx, kv)
		if err != nil {
			if ctx.Err() == nil {
				lg.Warn("reading tenant usage", zap.Error(err))
				sleepCtx(ctx, time.Second)
			}
			continue
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range w.Watch(wctx, "", clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if err := resp.Err(); err != nil {
				lg.Warn("tenant usage watch ended; reading again", zap.Error(err))
				break
			}
			u.apply(resp.Events, resp.Header.Revision)
		}
		cancel()
	}
}

// load reads every key of the tenant at one revision, a page at a time, and marks the usage synced.
// Pages are small because values come with them (etcd has no byte-bounded range): 64 values of the
// largest request size etcd accepts (1.5 MiB) stay well inside the guard's memory limit.
func (u *usage) load(ctx context.Context, kv clientv3.KV) (int64, error) {
	const page = 64
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	first, err := kv.Get(rctx, "", clientv3.WithPrefix(), clientv3.WithLimit(page), clientv3.WithSort(
		clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return 0, err
	}
	rev := first.Header.Revision
	u.reset(rev)
	resp := first
	for {
		u.mu.Lock()
		for _, item := range resp.Kvs {
			u.set(item.Key, int64(len(item.Key)+len(item.Value)))
		}
		u.mu.Unlock()
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		next := string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		resp, err = kv.Get(rctx, next, clientv3.WithRange(clientv3.GetPrefixRangeEnd("")), clientv3.WithRev(rev),
			clientv3.WithLimit(page), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return 0, err
		}
	}
	u.mu.Lock()
	u.synced = true
	u.mu.Unlock()
	u.once.Do(func() { close(u.first) })
	return rev, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
