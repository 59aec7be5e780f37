package main

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestGateStopsRefusedCallsBeforeTheirHandler(t *testing.T) {
	g := newGate(zap.NewNop())
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
	want := &pb.StatusResponse{Header: &pb.ResponseHeader{}, Version: "3.5.0"}
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
