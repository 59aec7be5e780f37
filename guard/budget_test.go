package main

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// testBudget: a budget whose usage is read (empty, revision 1) and whose core is 10 MiB of a 100 MiB
// quota with the default 20% reserve.
func testBudget(lim Limits) *budget {
	u := newUsage(1000)
	u.reset(1)
	u.synced = true
	h := newHeadroom(20, 0)
	h.record("core0", 10<<20, 10<<20, 100<<20, "3.6.4", time.Now())
	return newBudget("/t/", lim, 1000, u, h)
}

func put(key string, size int) *pb.PutRequest {
	return &pb.PutRequest{Key: []byte(key), Value: make([]byte, size-len(key))}
}

func events(rev int64, kvs ...*pb.PutRequest) []*clientv3.Event {
	var out []*clientv3.Event
	for _, p := range kvs {
		out = append(out, &clientv3.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: p.Key, Value: p.Value, ModRevision: rev}})
	}
	return out
}

func code(err error) codes.Code { return status.Code(err) }

func TestStorageLimitHoldsWithWritesNotYetSeenOnTheWatch(t *testing.T) {
	b := testBudget(Limits{Storage: 1000})
	ctx := context.Background()
	// 600 bytes admitted and held until the watch shows revision 2.
	held, err := b.AdmitWrite(ctx, put("a", 600))
	if err != nil {
		t.Fatal(err)
	}
	b.Settle(held, &pb.PutResponse{Header: &pb.ResponseHeader{Revision: 2}}, nil)
	// Another 600 before the watch caught up: refused (the held 600 count).
	if _, err := b.AdmitWrite(ctx, put("b", 600)); code(err) != codes.ResourceExhausted ||
		!strings.Contains(err.Error(), "spec.limits.storage") {
		t.Fatalf("second write: %v", err)
	}
	b.usage.apply(events(2, put("a", 600)), 2)
	if s := b.usage.Snapshot(); s.Bytes != 600 || s.Keys != 1 || len(b.usage.held) != 0 {
		t.Fatalf("after the watch: %+v, held %d", s, len(b.usage.held))
	}
	// Overwriting a with the same size grows nothing: allowed at any usage; so are reads and deletes.
	if _, err := b.AdmitWrite(ctx, put("a", 600)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AdmitWrite(ctx, &pb.DeleteRangeRequest{Key: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(b.limited.WithLabelValues(reasonStorage)); got != 1 {
		t.Fatalf("storage refusals counted %v", got)
	}
	if note := b.last.Load(); note == nil || note.Reason != reasonStorage {
		t.Fatalf("last refusal %+v", note)
	}
}

func TestKeyLimitCountsNewKeysOnly(t *testing.T) {
	b := testBudget(Limits{Keys: 2})
	b.usage.apply(events(2, put("a", 10), put("b", 10)), 2)
	if _, err := b.AdmitWrite(context.Background(), put("a", 20)); err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	_, err := b.AdmitWrite(context.Background(), put("c", 10))
	if code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "spec.limits.keys") {
		t.Fatalf("third key: %v", err)
	}
}

func TestReservationsExpire(t *testing.T) {
	b := testBudget(Limits{Storage: 100})
	now := time.Now()
	b.now = func() time.Time { return now }
	held, err := b.AdmitWrite(context.Background(), put("a", 80))
	if err != nil {
		t.Fatal(err)
	}
	b.Settle(held, &pb.TxnResponse{Header: &pb.ResponseHeader{Revision: 99}}, nil) // never shown by the watch
	if _, err := b.AdmitWrite(context.Background(), put("b", 80)); err == nil {
		t.Fatal("held bytes must count")
	}
	now = now.Add(reservationTTL + time.Second)
	if _, err := b.AdmitWrite(context.Background(), put("b", 80)); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestCoreHeadroomRefusesGrowthNearTheCeiling(t *testing.T) {
	b := testBudget(Limits{})
	// Ceiling 80 MiB; the core is at 10 MiB. Writes accumulate between polls.
	for i := 0; i < 69; i++ {
		if _, err := b.AdmitWrite(context.Background(), put("k", 1<<20)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	_, err := b.AdmitWrite(context.Background(), put("k", 1<<20))
	if code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "near its space quota") {
		t.Fatalf("past the ceiling: %v", err)
	}
	// A lease grant grows the database too; a delete and a range do not.
	b.core.record("core0", b.core.State().Ceiling-10, 0, 100<<20, "3.6.4", time.Now())
	if _, err := b.AdmitWrite(context.Background(), &pb.LeaseGrantRequest{TTL: 10}); code(err) != codes.ResourceExhausted {
		t.Fatalf("lease grant: %v", err)
	}
	if _, err := b.AdmitWrite(context.Background(), &pb.DeleteRangeRequest{Key: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	// A poll showing the core compacted and defragmented reopens it.
	b.core.record("core0", 5<<20, 5<<20, 100<<20, "3.6.4", time.Now())
	if _, err := b.AdmitWrite(context.Background(), put("k", 1<<20)); err != nil {
		t.Fatal(err)
	}
}

func TestHeadroomWithoutQuotaUsesEtcdDefaultAndFailsClosedBeforeFirstPoll(t *testing.T) {
	h := newHeadroom(20, 0)
	now := time.Unix(1000, 0)
	h.now = func() time.Time { return now }
	if msg := h.Admit(1); !strings.Contains(msg, "not known yet") {
		t.Fatalf("before a poll: %q", msg)
	}
	h.record("core0", 1<<20, 1<<20, 0, "3.6.4", now)
	if s := h.State(); s.Quota != 2<<30 || s.Ceiling != (2<<30)*8/10 {
		t.Fatalf("%+v", s)
	}
	// Polls come sooner as the room shrinks.
	if d := h.next(); d < 20*time.Second {
		t.Fatalf("lots of room: poll in %v", d)
	}
	now = now.Add(24 * time.Hour) // grown slowly: 0.02 MiB/s
	h.record("core0", h.State().Ceiling-(1<<20), 0, 0, "3.6.4", now)
	if d := h.next(); d > pollMin {
		t.Fatalf("1 MiB of room: poll in %v", d)
	}
	// Tenant writes seen on the watch (through any replica) count.
	h.Seen(32 << 20)
	if msg := h.Admit(1); msg == "" {
		t.Fatal("writes seen on the watch must count")
	}
	if d := h.next(); d < pollOver*8/10 {
		t.Fatalf("over the ceiling: poll in %v", d)
	}
}

func TestWritesCountUntilAPollCanHoldThem(t *testing.T) {
	h := newHeadroom(20, 0)
	now := time.Unix(1000, 0)
	h.now = func() time.Time { return now }
	poll := func() { h.record("core0", 10<<20, 0, 100<<20, "3.6.4", now) } // the core's size stays 10 MiB
	size := func() int64 { return h.State().Size >> 20 }
	poll()
	// In flight: counted whatever the polls say meanwhile.
	if msg := h.Admit(5 << 20); msg != "" {
		t.Fatal(msg)
	}
	now = now.Add(10 * time.Second)
	poll()
	if size() != 15 {
		t.Fatalf("in flight: %d MiB", size())
	}
	// Answered, and seen on the watch: the core may not have committed them yet (etcd commits in
	// batches), so a poll sent shortly after leaves them counted.
	h.Answered(5 << 20)
	h.Seen(2 << 20)
	now = now.Add(200 * time.Millisecond)
	poll()
	if size() != 17 {
		t.Fatalf("answered 200 ms before the poll: %d MiB", size())
	}
	// A poll sent coreCommitLag later holds them.
	now = now.Add(coreCommitLag)
	h.Seen(1 << 20) // applied just now: still counted
	poll()
	if size() != 11 {
		t.Fatalf("a poll after the lag: %d MiB", size())
	}
	// Applied writes are kept in steps, not one by one.
	for i := 0; i < 1000; i++ {
		h.Seen(1)
	}
	if len(h.applied) != 1 {
		t.Fatalf("%d steps for writes within one", len(h.applied))
	}
	// While polls fail, the list stays bounded and nothing is forgotten.
	before := h.State().Size
	for i := 0; i < 3*appliedSteps; i++ {
		now = now.Add(appliedStep)
		h.Seen(1)
	}
	if len(h.applied) != appliedSteps || h.State().Size != before+3*appliedSteps {
		t.Fatalf("%d steps, %d bytes more", len(h.applied), h.State().Size-before)
	}
}

func TestGrowthOthersCauseIsExtrapolatedFromThePolls(t *testing.T) {
	h := newHeadroom(20, 0)
	now := time.Unix(1000, 0)
	h.now = func() time.Time { return now }
	size := func() int64 { return h.State().Size >> 20 }
	h.record("core0", 10<<20, 0, 100<<20, "3.6.4", now)
	if size() != 10 {
		t.Fatalf("one poll: %d MiB", size())
	}
	// 10 MiB/s between two polls, none of it this replica's: the core is taken to have grown on since the
	// second poll was sent, and for the commit lag after now.
	h.record("core0", 12<<20, 0, 100<<20, "3.6.4", now.Add(200*time.Millisecond))
	now = now.Add(500 * time.Millisecond)
	if want := int64(12 + 10*(0.3+coreCommitLag.Seconds())); size() != want {
		t.Fatalf("growing at 10 MiB/s: %d MiB, want %d", size(), want)
	}
	// A poll showing the core compacted and defragmented: no growth.
	h.record("core0", 5<<20, 0, 100<<20, "3.6.4", now)
	now = now.Add(time.Second)
	if size() != 5 {
		t.Fatalf("after a defragmentation: %d MiB", size())
	}
}

func TestTxnCostIsTheLargerBranchLikeEtcd(t *testing.T) {
	txn := &pb.TxnRequest{
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: put("a", 100)}}},
		Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: put("b", 300)}},
			{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("c")}}}},
	}
	puts, written, cost := writeOf(txn, "/t/")
	if len(puts) != 2 || written != 300 || cost != 300+3+kvOverhead {
		t.Fatalf("puts %v written %d cost %d", puts, written, cost)
	}
	if _, w, c := writeOf(&pb.RangeRequest{}, "/t/"); w != 0 || c != 0 {
		t.Fatal("a range writes nothing")
	}
}

func TestWriteRateThrottlesThenRefuses(t *testing.T) {
	b := testBudget(Limits{WriteRate: 1000, WriteBurst: 2000})
	now := time.Now()
	b.now = func() time.Time { return now }
	ctx := context.Background()
	if _, err := b.AdmitWrite(ctx, put("a", 2000)); err != nil {
		t.Fatal(err)
	}
	// The bucket is empty; 100 bytes take 100 ms: within maxThrottleWait, so it waits.
	if _, err := b.AdmitWrite(ctx, put("a", 100)); err != nil {
		t.Fatal(err)
	}
	_, err := b.AdmitWrite(ctx, put("a", 1000)) // a second's worth: refused
	if code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "spec.limits.writeBytesPerSecond") {
		t.Fatalf("%v", err)
	}
	if _, err := b.AdmitWrite(ctx, put("big", 3000)); code(err) != codes.ResourceExhausted {
		t.Fatalf("larger than the burst: %v", err)
	}
}

func TestRequestRate(t *testing.T) {
	b := testBudget(Limits{RequestRate: 10, RequestBurst: 3})
	now := time.Now()
	b.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if err := b.AdmitCall(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.AdmitCall(context.Background()); err != nil { // 100 ms wait: allowed
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		_ = b.AdmitCall(context.Background())
	}
	err := b.AdmitCall(context.Background())
	if code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "spec.limits.requestsPerSecond") {
		t.Fatalf("%v", err)
	}
}

// fakeWatchStream plays a client sending the given requests, and records what the server sends.
type fakeWatchStream struct {
	grpc.ServerStream
	in   []*pb.WatchRequest
	sent []*pb.WatchResponse
}

func (f *fakeWatchStream) Context() context.Context     { return context.Background() }
func (f *fakeWatchStream) SetHeader(metadata.MD) error  { return nil }
func (f *fakeWatchStream) SendHeader(metadata.MD) error { return nil }
func (f *fakeWatchStream) RecvMsg(m any) error {
	if len(f.in) == 0 {
		return context.Canceled
	}
	*(m.(*pb.WatchRequest)) = *f.in[0] //nolint:govet // a test copy
	f.in = f.in[1:]
	return nil
}
func (f *fakeWatchStream) SendMsg(m any) error {
	f.sent = append(f.sent, m.(*pb.WatchResponse))
	return nil
}

func TestWatchLimitAnswersLikeEtcdAndGivesBackCancelled(t *testing.T) {
	b := testBudget(Limits{Watches: 2})
	create := &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("k")}}}
	fake := &fakeWatchStream{in: []*pb.WatchRequest{create, create, create}}
	ws := &watchStream{ServerStream: fake, b: b}
	var req pb.WatchRequest
	for i := 0; i < 2; i++ {
		if err := ws.RecvMsg(&req); err != nil {
			t.Fatal(err)
		}
	}
	// The third create is answered by the guard and never reaches the proxy.
	if err := ws.RecvMsg(&req); err != context.Canceled {
		t.Fatalf("third create reached the proxy: %v", err)
	}
	if len(fake.sent) != 1 || !fake.sent[0].Created || !fake.sent[0].Canceled ||
		!strings.Contains(fake.sent[0].CancelReason, "spec.limits.watches") {
		t.Fatalf("refusal %+v", fake.sent)
	}
	// The proxy cancels one: room for one more; the stream ends: every watch is given back.
	if err := ws.SendMsg(&pb.WatchResponse{WatchId: 0, Canceled: true}); err != nil {
		t.Fatal(err)
	}
	if n := b.watches.Load(); n != 1 {
		t.Fatalf("%d open after a cancel", n)
	}
	ws.done()
	if n := b.watches.Load(); n != 0 {
		t.Fatalf("%d open after the stream ended", n)
	}
}

func TestAWatchFromFarBackCostsItsHistoryInCalls(t *testing.T) {
	b := testBudget(Limits{RequestRate: 10, RequestBurst: 20})
	watch := func(start int64) *pb.WatchRequest {
		return &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{
			CreateRequest: &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: start}}}
	}
	// The newest revision comes from the answers the tenant gets, unary and watch alike.
	b.SawRevision(&pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 3000}})
	b.SawRevision(&pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 5000}})
	b.SawRevision(&pb.PutResponse{Header: &pb.ResponseHeader{Revision: 4000}}) // older: kept the newest
	b.SawRevision((*pb.RangeResponse)(nil))
	for _, c := range []struct {
		start, calls int64
	}{{0, 1}, {4999, 1}, {5001, 1}, {4901, 1}, {4900, 2}, {4000, 11}, {1, 20}} {
		if n, _ := b.watchCost(watch(c.start).GetCreateRequest()); n != c.calls {
			t.Errorf("a watch from %d: %d calls, want %d", c.start, n, c.calls)
		}
	}
	// The burst pays for one from far back; the next is refused as etcd refuses a watch, naming the rate
	// and why the watch cost that much; one from now still goes through.
	fake := &fakeWatchStream{in: []*pb.WatchRequest{watch(1), watch(1), watch(0)}}
	ws := &watchStream{ServerStream: fake, b: b}
	var req pb.WatchRequest
	for i := 0; i < 2; i++ { // the first, and the third after the second's refusal
		if err := ws.RecvMsg(&req); err != nil {
			t.Fatal(err)
		}
	}
	if len(fake.sent) != 1 || !fake.sent[0].Canceled ||
		!strings.Contains(fake.sent[0].CancelReason, "spec.limits.requestsPerSecond") ||
		!strings.Contains(fake.sent[0].CancelReason, "4999 revisions back") {
		t.Fatalf("refusal %+v", fake.sent)
	}
	if req.GetCreateRequest().StartRevision != 0 {
		t.Fatalf("the watch let through after the refusal: %+v", req.GetCreateRequest())
	}
}

func TestStatusReportsTheTenantsUsageAndQuota(t *testing.T) {
	b := testBudget(Limits{Storage: 1 << 20})
	s := &statusServer{version: "3.5.0", budget: b}
	resp, _ := s.Status(context.Background(), &pb.StatusRequest{})
	if resp.DbSize != 1 || resp.DbSizeInUse != 0 || resp.DbSizeQuota != 1<<20 {
		t.Fatalf("empty tenant: %+v (DbSize must never be 0: etcdctl divides by it)", resp)
	}
	b.usage.apply(events(5, put("a", 300)), 5)
	resp, _ = s.Status(context.Background(), &pb.StatusRequest{})
	if resp.DbSize != 300 || resp.DbSizeInUse != 300 || resp.Header.Revision != 5 {
		t.Fatalf("%+v", resp)
	}
}

func TestLimitFlags(t *testing.T) {
	base := []string{"--namespace=/t/", "--endpoints=https://c:2379", "--cacert=a", "--cert=b", "--key=c",
		"--cert-file=d", "--key-file=e", "--trusted-ca-file=f"}
	o, err := parseFlags(append(base, "--max-bytes=512Mi", "--max-keys=1000", "--write-bytes-per-second=1Mi",
		"--write-burst-bytes=8Mi", "--requests-per-second=100", "--request-burst=200", "--max-watches=50",
		"--max-leases=300", "--max-read-bytes-in-flight=64Mi"))
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{512 << 20, 1000, 1 << 20, 8 << 20, 100, 200, 50, 300, 64 << 20}
	if o.limits != want {
		t.Fatalf("%+v", o.limits)
	}
	// What the CRD admits, the guard parses (decimals, exponents; fractions of a byte round up).
	for value, want := range map[string]int64{"1.5Mi": 1572864, "1e7": 10000000, "1048576": 1048576, "0": 0,
		"100m": 1, "1.5Gi": 1610612736} {
		if got, err := parseLimit("max-bytes", value, true); err != nil || got != want {
			t.Errorf("%s: %d, %v", value, got, err)
		}
	}
	for _, bad := range []string{"--max-bytes=banana", "--max-keys=1k", "--max-bytes=-1", "--max-watches=x", "--max-leases=-5", "--max-bytes=2Pi",
		"--core-reserve-percent=95"} {
		if _, err := parseFlags(append(base, bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// BenchmarkBudgetOnAGet and BenchmarkBudgetOnAPut: what the amounts add to every call, with the default
// limits on (go test -bench Budget). Rates are lifted so the loop measures the checks, not the waits.
func benchmarkBudget(b *testing.B, req, resp any) {
	bg := testBudget(Limits{Storage: 512 << 20, Keys: 100000, WriteRate: 1 << 20, WriteBurst: 8 << 20,
		RequestRate: 5000, RequestBurst: 10000, Watches: 1000, Leases: 10000, ReadBytesInFlight: 64 << 20})
	bg.requests.SetLimit(rate.Inf)
	bg.writes.SetLimit(rate.Inf)
	bg.core.record("core0", 0, 0, 1<<50, "3.6.4", time.Now())
	bg.usage.apply(events(2, put("/registry/pods/default/p", 2000)), 2)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if err := bg.AdmitCall(ctx); err != nil {
			b.Fatal(err)
		}
		held, err := bg.AdmitWrite(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		done, err := bg.AdmitRead(ctx, req, bg.readBytesOf(req))
		if err != nil {
			b.Fatal(err)
		}
		done()
		bg.Settle(held, resp, nil)
	}
}

func BenchmarkBudgetOnAGet(b *testing.B) {
	benchmarkBudget(b, &pb.RangeRequest{Key: []byte("/registry/pods/default/p")}, &pb.RangeResponse{})
}

func BenchmarkBudgetOnAPut(b *testing.B) {
	benchmarkBudget(b, &pb.PutRequest{Key: []byte("/registry/pods/default/p"), Value: make([]byte, 256)},
		&pb.PutResponse{Header: &pb.ResponseHeader{Revision: 1}})
}

func TestReadBytesBoundsWhatARangeReads(t *testing.T) {
	u := testBudget(Limits{}).usage
	u.apply(events(2, put("/registry/pods/a/x", 100), put("/registry/pods/b/y", 200), put("/registry/cm/a/z", 50),
		put("/top", 10), put("/registry/ev/1", 20), put("/registry/ev/2", 20), put("/registry/ev/3", 20)), 2)
	cases := []struct {
		key, end string
		limit    int64
		want     int64
	}{
		{"/registry/pods/", "/registry/pods0", 0, 300},        // a resource's LIST: exactly its directory
		{"/registry/pods/a/", "/registry/pods/a0", 0, 100},    // one namespace
		{"/registry/cm/a/z", "", 0, 50},                       // a GET
		{"/registry/cm/a/nothing", "", 0, 0},                  // a GET of a key that is not there
		{"/registry/pods/a/x\x00", "/registry/pods0", 0, 300}, // the next page: its directory, at most
		{"/registry/", "/registry0", 0, 410},                  // the whole registry
		{"", "\x00", 0, 420},                                  // everything from the first key
		{"/registry/pods/a/", "\x00", 0, 420},                 // from a key to the end
		{"/registry/pods/a/", "/registry/zzz", 0, 410},        // across directories: the one holding both
		// With a limit etcd reads limit+1 keys: at most that many of the largest key there.
		{"/registry/ev/", "/registry/ev0", 1, 40},
		{"/registry/ev/", "/registry/ev0", 5, 60},
		{"/registry/pods/", "/registry/pods0", 1, 300},
		{"", "\x00", 1, 400},
		// A client's limit so large that limit+1 keys of the largest would overflow: the directory, not
		// the wrapped product (it was 20 here, so a read of everything went through as 20 bytes).
		{"/registry/ev/", "/registry/ev0", 1 << 62, 60},
		{"/registry/ev/", "/registry/ev0", math.MaxInt64, 60},
	}
	for _, c := range cases {
		if got := u.ReadBytes([]byte(c.key), []byte(c.end), c.limit, 0); got != c.want {
			t.Errorf("[%q, %q) limit %d: %d, want %d", c.key, c.end, c.limit, got, c.want)
		}
	}
	// Deletes and overwrites move the directories; an emptied one is forgotten. The largest key is a
	// high-water mark: a smaller overwrite does not lower it.
	u.apply([]*clientv3.Event{{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte("/registry/pods/b/y")}}}, 3)
	u.apply(events(4, put("/registry/pods/a/x", 40)), 4)
	if got := u.ReadBytes([]byte("/registry/pods/"), []byte("/registry/pods0"), 0, 0); got != 40 {
		t.Errorf("pods after a delete and an overwrite: %d, want 40", got)
	}
	if got := u.dirs["/registry/pods/"].largest; got != 200 {
		t.Errorf("the largest pod so far: %d, want 200", got)
	}
	if _, ok := u.dirs["/registry/pods/b/"]; ok {
		t.Error("an emptied directory is still kept")
	}
}

func TestReadsOfThePastAreBoundedByTheLargestKeyTheyCanSee(t *testing.T) {
	u := testBudget(Limits{}).usage // read at revision 1
	u.apply(events(2, put("/registry/pods/a/x", 100), put("/registry/pods/b/y", 200), put("/registry/cm/a/z", 50)), 2)
	u.apply([]*clientv3.Event{{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte("/registry/pods/b/y")}}}, 3)
	pods, podsEnd := []byte("/registry/pods/"), []byte("/registry/pods0")
	cases := []struct {
		what       string
		key, end   []byte
		limit, rev int64
		want       int64
		past       bool
	}{
		{"now", pods, podsEnd, 0, 0, 100, false},
		{"at the revision followed to", pods, podsEnd, 0, 3, 100, false},
		{"at a revision not followed yet", pods, podsEnd, 0, 9, 100, false},
		// At revision 2 the deleted pod is there: the live keys do not bound the read.
		{"before a delete", pods, podsEnd, 0, 2, unbounded, true},
		{"before a delete, limit 1", pods, podsEnd, 1, 2, 400, true},                    // 2 keys of the largest seen (200)
		{"one key before a delete", []byte("/registry/pods/b/y"), nil, 0, 2, 200, true}, // its emptied directory
		{"another directory, limit 1", []byte("/registry/cm/"), []byte("/registry/cm0"), 1, 2, 400, true},
		{"a huge limit", pods, podsEnd, 1 << 62, 2, unbounded, true},
	}
	for _, c := range cases {
		if got := u.ReadBytes(c.key, c.end, c.limit, c.rev); got != c.want {
			t.Errorf("%s: %d, want %d", c.what, got, c.want)
		}
		if past, _ := u.Past(c.key, c.end, c.rev); past != c.past {
			t.Errorf("%s: past %v, want %v", c.what, past, c.past)
		}
	}
	// Each directory is bounded by its own largest key while none was emptied: a LIST's later chunks (limit
	// 500, at the first chunk's revision) are not held to the tenant's largest object elsewhere.
	v := testBudget(Limits{}).usage
	v.apply(events(2, put("/registry/pods/a/x", 100), put("/registry/crd/big", 1000)), 2)
	v.apply(events(3, put("/registry/pods/a/x", 50)), 3)
	if got := v.ReadBytes([]byte("/registry/pods/a/x\x00"), []byte("/registry/pods0"), 500, 2); got != 501*100 {
		t.Errorf("a later chunk of pods: %d, want 501 pods of the largest (100)", got)
	}
	// Before the last full read the replica saw nothing: a key can be as large as a request.
	u.reset(5)
	u.synced = true
	if past, bound := u.Past(pods, podsEnd, 4); !past || bound != 1000 {
		t.Errorf("before the full read: past %v, key bound %d; want true, 1000", past, bound)
	}
	if past, bound := u.Past(pods, podsEnd, 5); past || bound != 0 {
		t.Errorf("at the full read of nothing: past %v, key bound %d; want false, 0", past, bound)
	}
	// While the keys are being read, nothing is bounded by them.
	u.synced = false
	if got := u.ReadBytes(pods, podsEnd, 0, 0); got != unbounded {
		t.Errorf("while reading the keys: %d, want unbounded", got)
	}
	// A Txn with such a range cannot be paged: refused, naming the limit.
	b := testBudget(Limits{ReadBytesInFlight: 1 << 20})
	b.usage.apply(events(2, put("/registry/pods/a/x", 100)), 2)
	b.usage.apply(events(3, put("/registry/pods/a/x", 30)), 3)
	past := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{
		RequestRange: &pb.RangeRequest{Key: pods, RangeEnd: podsEnd, Revision: 2}}}}}
	_, err := b.AdmitRead(context.Background(), past, b.readBytesOf(past))
	if code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "spec.limits.readBytesInFlight") {
		t.Fatalf("a Txn reading the past without a limit: %v", err)
	}
}

func TestReadsWaitWhileTheBytesInFlightWouldPassTheLimit(t *testing.T) {
	b := testBudget(Limits{ReadBytesInFlight: 250})
	b.usage.apply(events(2, put("/registry/pods/a/x", 100), put("/registry/pods/b/y", 200), put("/registry/cm/a/z", 50)), 2)
	ctx := context.Background()
	pods := &pb.RangeRequest{Key: []byte("/registry/pods/"), RangeEnd: []byte("/registry/pods0")}
	// Larger than the limit alone: it runs, alone.
	done, err := b.AdmitRead(ctx, pods, b.readBytesOf(pods))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.inFlight.Load(); got != 250 {
		t.Fatalf("read bytes in flight: %v, want 250", got)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	get := &pb.RangeRequest{Key: []byte("/registry/cm/a/z")}
	if _, err := b.AdmitRead(short, get, b.readBytesOf(get)); code(err) != codes.DeadlineExceeded {
		t.Fatalf("a read while the limit is taken: %v, want it held until its deadline", err)
	}
	// Count-only ranges read no values; keys that are not there read nothing: neither waits.
	for _, free := range []any{&pb.RangeRequest{Key: pods.Key, RangeEnd: pods.RangeEnd, CountOnly: true},
		&pb.RangeRequest{Key: []byte("/missing")}, &pb.PutRequest{Key: []byte("/k")}} {
		d, err := b.AdmitRead(short, free, b.readBytesOf(free))
		if err != nil {
			t.Fatalf("%v: %v", free, err)
		}
		d()
	}
	// A Txn's ranges count (the larger branch).
	txn := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: get}}},
		Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: pods}}}}
	if n := b.readBytesOf(txn); n != 300 {
		t.Fatalf("txn reads %d, want 300", n)
	}
	done()
	d, err := b.AdmitRead(ctx, get, b.readBytesOf(get))
	if err != nil {
		t.Fatalf("once the first read is done: %v", err)
	}
	d()
	if got := b.inFlight.Load(); got != 0 {
		t.Fatalf("bytes in flight after every read ended: %d", got)
	}
}

func TestPagesSplitARangeByTheSizesOfItsKeys(t *testing.T) {
	u := testBudget(Limits{}).usage
	u.apply(events(2, put("/p/a", 40), put("/p/b", 40), put("/p/c", 100), put("/p/d", 30), put("/p/e", 30),
		put("/q/x", 500)), 2)
	type want struct {
		start string
		bytes int64
	}
	check := func(key, end string, limit int64, expected ...want) {
		t.Helper()
		got := u.Pages([]byte(key), []byte(end), limit)
		if len(got) != len(expected) {
			t.Fatalf("[%q, %q) by %d: %d pages %v, want %v", key, end, limit, len(got), got, expected)
		}
		for i, p := range got {
			if string(p.start) != expected[i].start || p.bytes != expected[i].bytes {
				t.Fatalf("[%q, %q) by %d: page %d is %q/%d, want %v", key, end, limit, i, p.start, p.bytes, expected[i])
			}
		}
	}
	// The first page starts where the range does; a key larger than a page is a page of its own.
	check("/p/", "/p0", 90, want{"/p/", 80}, want{"/p/c", 100}, want{"/p/d", 60})
	check("/p/", "/p0", 1000, want{"/p/", 240})
	check("/p/b", "/p/e", 100, want{"/p/b", 40}, want{"/p/c", 100}, want{"/p/d", 30})
	check("/p/d", "\x00", 100, want{"/p/d", 60}, want{"/q/x", 500})
	check("/r/", "/r0", 100, want{"/r/", 0})
}
