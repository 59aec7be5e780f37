package main

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestGateStopsRefusedCallsBeforeTheirHandler(t *testing.T) {
	g := newGate(zap.NewNop(), &fakeBook{owned: map[int64]bool{}}, testBudget(Limits{}))
	called := false
	handler := func(context.Context, any) (any, error) { called = true; return &pb.RangeResponse{}, nil }
	cases := []struct {
		method string
		req    any
		code   codes.Code
	}{
		{"/etcdserverpb.KV/Range", &pb.RangeRequest{}, codes.OK},
		{"/etcdserverpb.KV/Compact", &pb.CompactionRequest{}, codes.PermissionDenied},
		{"/etcdserverpb.Lease/LeaseGrant", &pb.LeaseGrantRequest{TTL: 10}, codes.OK},
		{"/etcdserverpb.Lease/LeaseGrant", &pb.LeaseGrantRequest{TTL: 10, ID: 7}, codes.PermissionDenied},
		{"/etcdserverpb.Lease/LeaseRevoke", &pb.LeaseRevokeRequest{ID: 7}, codes.PermissionDenied},
		{"/etcdserverpb.Maintenance/Status", &pb.StatusRequest{}, codes.OK},
		{"/etcdserverpb.Maintenance/Defragment", &pb.DefragmentRequest{}, codes.PermissionDenied},
	}
	for _, c := range cases {
		called = false
		_, err := g.Unary(context.Background(), c.req, &grpc.UnaryServerInfo{FullMethod: c.method}, handler)
		if got := status.Code(err); got != c.code || called != (c.code == codes.OK) {
			t.Errorf("%s %v: code %v (want %v), handler called %v", c.method, c.req, got, c.code, called)
		}
	}
	denied := testutil.ToFloat64(g.refused.WithLabelValues("/etcdserverpb.Lease/LeaseGrant", "PermissionDenied"))
	if denied != 1 {
		t.Errorf("refused LeaseGrant counted %v times, want 1", denied)
	}
	if n := testutil.CollectAndCount(g.refused); n != 4 {
		t.Errorf("%d refused series, want 4 (Compact, LeaseGrant, LeaseRevoke, Defragment)", n)
	}
}

func TestStatusSaysOnlyTheReportedVersion(t *testing.T) {
	resp, err := (&statusServer{version: "3.5.0"}).Status(context.Background(), &pb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.StatusResponse{Header: &pb.ResponseHeader{}, Version: "3.5.0", DbSize: 1}
	if resp.String() != want.String() {
		t.Fatalf("got %v, want %v", resp, want)
	}
}

func TestMetricsInterceptorsSkipInventedMethods(t *testing.T) {
	seen := 0
	counting := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		seen++
		return h(ctx, req)
	}
	wrapped := knownOnlyUnary(counting)
	handler := func(context.Context, any) (any, error) { return nil, nil }
	for _, m := range []string{"/etcdserverpb.KV/Range", "/etcdserverpb.Cluster/Invented", "/x.Y/Z"} {
		if _, err := wrapped(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: m}, handler); err != nil {
			t.Fatal(err)
		}
	}
	if seen != 1 {
		t.Errorf("metrics interceptor ran %d times, want 1 (only the etcd method)", seen)
	}
}

type fakeBook struct{ owned map[int64]bool }

func (f *fakeBook) Record(_ context.Context, id int64) error { f.owned[id] = true; return nil }
func (f *fakeBook) Owns(_ context.Context, id int64) (bool, error) {
	return f.owned[id], nil
}
func (f *fakeBook) Count(context.Context) (int64, error) { return int64(len(f.owned)), nil }

func TestLeaseGrantsBeyondTheLimitAreRefusedUntilOneEnds(t *testing.T) {
	book := &fakeBook{owned: map[int64]bool{}}
	b := testBudget(Limits{Leases: 2})
	g := newGate(zap.NewNop(), book, b)
	info := &grpc.UnaryServerInfo{FullMethod: "/etcdserverpb.Lease/LeaseGrant"}
	next, forwarded := int64(0), 0
	grant := func(context.Context, any) (any, error) {
		forwarded++
		next++
		return &pb.LeaseGrantResponse{ID: next, TTL: 10}, nil
	}
	for i := 0; i < 2; i++ {
		if _, err := g.Unary(context.Background(), &pb.LeaseGrantRequest{TTL: 10}, info, grant); err != nil {
			t.Fatalf("grant %d within the limit: %v", i+1, err)
		}
	}
	_, err := g.Unary(context.Background(), &pb.LeaseGrantRequest{TTL: 10}, info, grant)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "spec.limits.leases") ||
		!strings.Contains(err.Error(), "2 of 2 leases") {
		t.Fatalf("third grant: %v, want RESOURCE_EXHAUSTED naming spec.limits.leases", err)
	}
	if forwarded != 2 {
		t.Fatalf("the refused grant reached the core: %d grants forwarded", forwarded)
	}
	if got := testutil.ToFloat64(b.limited.WithLabelValues(reasonLeases)); got != 1 {
		t.Fatalf("limited_total{reason=leases} = %v, want 1", got)
	}
	delete(book.owned, 1) // the core revoked lease 1 (its TTL ended): its marker went with it
	if _, err := g.Unary(context.Background(), &pb.LeaseGrantRequest{TTL: 10}, info, grant); err != nil {
		t.Fatalf("a grant once a lease ended: %v", err)
	}
	// Grants go one at a time; the slot is free again after a refusal and after a grant.
	select {
	case b.grants <- struct{}{}:
		<-b.grants
	default:
		t.Fatal("the grant slot was not given back")
	}
}

func TestOnlyLeasesGrantedThroughTheEndpointCanBeAttached(t *testing.T) {
	book := &fakeBook{owned: map[int64]bool{}}
	g := newGate(zap.NewNop(), book, testBudget(Limits{}))
	grantInfo := &grpc.UnaryServerInfo{FullMethod: "/etcdserverpb.Lease/LeaseGrant"}
	granted := func(context.Context, any) (any, error) { return &pb.LeaseGrantResponse{ID: 0x42, TTL: 10}, nil }
	if _, err := g.Unary(context.Background(), &pb.LeaseGrantRequest{TTL: 10}, grantInfo, granted); err != nil {
		t.Fatal(err)
	}
	if !book.owned[0x42] {
		t.Fatal("a granted lease must be recorded")
	}
	ok := func(context.Context, any) (any, error) { return &pb.PutResponse{}, nil }
	put := &grpc.UnaryServerInfo{FullMethod: "/etcdserverpb.KV/Put"}
	txn := &grpc.UnaryServerInfo{FullMethod: "/etcdserverpb.KV/Txn"}
	nested := func(lease int64) *pb.TxnRequest {
		inner := &pb.TxnRequest{Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{
			RequestPut: &pb.PutRequest{Key: []byte("k"), Lease: lease}}}}}
		return &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: inner}}}}
	}
	cases := []struct {
		info *grpc.UnaryServerInfo
		req  any
		code codes.Code
	}{
		{put, &pb.PutRequest{Key: []byte("k")}, codes.OK},
		{put, &pb.PutRequest{Key: []byte("k"), Lease: 0x42}, codes.OK},
		{put, &pb.PutRequest{Key: []byte("k"), Lease: 0x43}, codes.PermissionDenied},
		{txn, nested(0x42), codes.OK},
		{txn, nested(0x43), codes.PermissionDenied},
	}
	for _, c := range cases {
		_, err := g.Unary(context.Background(), c.req, c.info, ok)
		if got := status.Code(err); got != c.code {
			t.Errorf("%s %v: %v, want %v", c.info.FullMethod, c.req, got, c.code)
		}
	}
}

func TestLeasesInFindsEveryPut(t *testing.T) {
	req := &pb.TxnRequest{
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Lease: 1}}},
			{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{}}}},
		Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Lease: 2}}}}}}}},
	}
	got := leasesIn(req)
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("got %v", got)
	}
	if leasesIn(&pb.RangeRequest{}) != nil || leasesIn(&pb.PutRequest{}) != nil {
		t.Fatal("no lease, no IDs")
	}
	if k := leaseMarkerKey("/wardle/", 255); k != "\x00etcdproxy-guard/leases/wardle/ff" {
		t.Fatalf("marker %q", k)
	}
}
