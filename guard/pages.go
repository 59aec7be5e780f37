package main

import (
	"bytes"
	"context"
	"math"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy"
)

// A Range whose answer would be larger than spec.limits.readBytesInFlight is read from the core in pages
// of at most that many bytes, all at the revision of the first page, and answered as the core would have
// answered the whole range: the core then never builds more than one page of it in memory, whatever the
// tenant holds. The page bounds come from the key sizes the replica follows (usage.Pages); a read of the
// past, whose keys the replica may no longer count (usage.Past), is read in pages of as many keys as the
// limit holds at the largest key it can see. What etcd does after reading — revision filters, sorting,
// the limit, `more`, `count` — is done here over the pages, as etcd's executeRange does it over the whole
// range.

// pager reads large ranges page by page through the tenant's namespaced core client.
type pager struct {
	kv     clientv3.KV
	budget *budget
}

// Large says whether r, which reads size bytes (budget.readBytesOf), is read in pages: a multi-key read
// larger than the limit. A nil pager (unit tests) pages nothing.
func (p *pager) Large(r *pb.RangeRequest, size int64) bool {
	return p != nil && len(r.RangeEnd) > 0 && size > p.budget.limits.ReadBytesInFlight
}

// pageRead is what one page asks the core for: a range, at most limit keys of it (0: all), or only their
// count; bytes is what it holds of the reads in flight.
type pageRead struct {
	key, end     []byte
	limit, bytes int64
	countOnly    bool
}

// Range answers r from pages, each admitted to the reads in flight like any other read.
func (p *pager) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	sortOrder := effectiveSortOrder(r)
	filtered := r.MinModRevision != 0 || r.MaxModRevision != 0 || r.MinCreateRevision != 0 || r.MaxCreateRevision != 0
	// Without a sort order or filters etcd reads only the first limit+1 keys (in key order, even when it
	// then sorts them by another target): the rest is only counted. (A limit of MaxInt64 overflows
	// etcd's limit+1 into no limit at all.)
	firstOnly := r.Limit > 0 && r.Limit < math.MaxInt64 && r.SortOrder == pb.RangeRequest_NONE && !filtered
	var wanted int64 // keys a page may still read for the answer (0: any)
	if firstOnly {
		wanted = r.Limit + 1
	}
	// etcd sorts by value before it drops the values of a keys-only read: keep them for that sort.
	keysOnly := r.KeysOnly && (sortOrder == pb.RangeRequest_NONE || r.SortTarget != pb.RangeRequest_VALUE)
	out := &pb.RangeResponse{}
	rev := r.Revision
	fetch := func(pr pageRead) (*pb.RangeResponse, error) {
		if need := wanted - int64(len(out.Kvs)); wanted > 0 && !pr.countOnly && (pr.limit == 0 || pr.limit > need) {
			pr.limit = need // no more of the page than the answer needs
		}
		resp, err := p.read(ctx, &pb.RangeRequest{Key: pr.key, RangeEnd: pr.end, Revision: rev, Limit: pr.limit,
			KeysOnly: keysOnly, CountOnly: pr.countOnly, Serializable: r.Serializable}, pr.bytes)
		if err != nil {
			return nil, err
		}
		if out.Header == nil {
			out.Header = resp.Header
		}
		// Later pages are read at the first one's revision. A read at an older revision is answered with
		// the current revision in its header, so only a read without one takes it from there.
		if rev == 0 {
			rev = resp.Header.Revision
		}
		out.Kvs = append(out.Kvs, resp.Kvs...)
		return resp, nil
	}
	enough := func() bool { return wanted > 0 && int64(len(out.Kvs)) >= wanted }
	var err error
	if past, keyBound := p.budget.usage.Past(r.Key, r.RangeEnd, r.Revision); past {
		err = p.byKeys(r, keyBound, fetch, enough, out)
	} else {
		err = p.byBytes(r, fetch, enough, out)
	}
	if err != nil {
		return nil, err
	}
	out.Kvs = filterKVs(out.Kvs, r)
	sortKVs(out.Kvs, r.SortTarget, sortOrder)
	if r.Limit > 0 && int64(len(out.Kvs)) > r.Limit {
		out.Kvs = out.Kvs[:r.Limit]
		out.More = true
	}
	if r.KeysOnly {
		for _, kv := range out.Kvs {
			kv.Value = nil
		}
	}
	return out, nil
}

// byBytes reads r in pages split by the live key sizes, each [start, next page's start) counted on its
// own; once the answer has its keys, the rest of the range is only counted.
func (p *pager) byBytes(r *pb.RangeRequest, fetch func(pageRead) (*pb.RangeResponse, error), enough func() bool,
	out *pb.RangeResponse) error {
	lim := p.budget.limits.ReadBytesInFlight
	pages := p.budget.usage.Pages(r.Key, r.RangeEnd, lim)
	for i, page := range pages {
		pr := pageRead{key: page.start, end: r.RangeEnd, bytes: min(page.bytes, lim)}
		if i+1 < len(pages) {
			pr.end = pages[i+1].start
		}
		if enough() {
			pr = pageRead{key: page.start, end: r.RangeEnd, countOnly: true}
		}
		resp, err := fetch(pr)
		if err != nil {
			return err
		}
		out.Count += resp.Count
		if pr.countOnly {
			break
		}
	}
	return nil
}

// byKeys reads r in pages of as many keys as the limit holds at keyBound bytes each, each from after the
// last key read to the range's end: the first page's count is the whole range's.
func (p *pager) byKeys(r *pb.RangeRequest, keyBound int64, fetch func(pageRead) (*pb.RangeResponse, error),
	enough func() bool, out *pb.RangeResponse) error {
	lim := p.budget.limits.ReadBytesInFlight
	perPage := max(1, lim/max(keyBound, 1))
	for key, first := r.Key, true; ; first = false {
		resp, err := fetch(pageRead{key: key, end: r.RangeEnd, limit: perPage, bytes: min(keysOf(perPage-1, keyBound), lim)})
		if err != nil {
			return err
		}
		if first {
			out.Count = resp.Count
		}
		if !resp.More || len(resp.Kvs) == 0 || enough() {
			return nil
		}
		key = append(bytes.Clone(resp.Kvs[len(resp.Kvs)-1].Key), 0)
	}
}

// read is one page: held to the reads in flight for its bytes.
func (p *pager) read(ctx context.Context, r *pb.RangeRequest, n int64) (*pb.RangeResponse, error) {
	if r.CountOnly {
		n = 0
	}
	done, err := p.budget.holdRead(ctx, n)
	if err != nil {
		return nil, err
	}
	defer done()
	p.budget.pages.Add(1)
	resp, err := p.kv.Do(ctx, grpcproxy.RangeRequestToOp(r))
	if err != nil {
		return nil, err
	}
	return (*pb.RangeResponse)(resp.Get()), nil
}

// effectiveSortOrder is the order etcd applies: ascending by default for a target other than the key,
// none for ascending keys (the order ranges come in).
func effectiveSortOrder(r *pb.RangeRequest) pb.RangeRequest_SortOrder {
	switch {
	case r.SortTarget != pb.RangeRequest_KEY && r.SortOrder == pb.RangeRequest_NONE:
		return pb.RangeRequest_ASCEND
	case r.SortTarget == pb.RangeRequest_KEY && r.SortOrder == pb.RangeRequest_ASCEND:
		return pb.RangeRequest_NONE
	}
	return r.SortOrder
}

// filterKVs keeps the keys within the request's revision bounds (0: no bound).
func filterKVs(kvs []*mvccpb.KeyValue, r *pb.RangeRequest) []*mvccpb.KeyValue {
	out := kvs[:0]
	for _, kv := range kvs {
		if (r.MaxModRevision != 0 && kv.ModRevision > r.MaxModRevision) ||
			(r.MinModRevision != 0 && kv.ModRevision < r.MinModRevision) ||
			(r.MaxCreateRevision != 0 && kv.CreateRevision > r.MaxCreateRevision) ||
			(r.MinCreateRevision != 0 && kv.CreateRevision < r.MinCreateRevision) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// sortKVs orders the keys by target, as etcd sorts a range's keys.
func sortKVs(kvs []*mvccpb.KeyValue, target pb.RangeRequest_SortTarget, order pb.RangeRequest_SortOrder) {
	if order == pb.RangeRequest_NONE {
		return
	}
	var less func(a, b *mvccpb.KeyValue) bool
	switch target {
	case pb.RangeRequest_VERSION:
		less = func(a, b *mvccpb.KeyValue) bool { return a.Version < b.Version }
	case pb.RangeRequest_CREATE:
		less = func(a, b *mvccpb.KeyValue) bool { return a.CreateRevision < b.CreateRevision }
	case pb.RangeRequest_MOD:
		less = func(a, b *mvccpb.KeyValue) bool { return a.ModRevision < b.ModRevision }
	case pb.RangeRequest_VALUE:
		less = func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Value, b.Value) < 0 }
	default:
		less = func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Key, b.Key) < 0 }
	}
	var s sort.Interface = byTarget{kvs, less}
	if order == pb.RangeRequest_DESCEND {
		s = sort.Reverse(s)
	}
	sort.Sort(s)
}

type byTarget struct {
	kvs  []*mvccpb.KeyValue
	less func(a, b *mvccpb.KeyValue) bool
}

func (s byTarget) Len() int           { return len(s.kvs) }
func (s byTarget) Less(i, j int) bool { return s.less(s.kvs[i], s.kvs[j]) }
func (s byTarget) Swap(i, j int)      { s.kvs[i], s.kvs[j] = s.kvs[j], s.kvs[i] }
