package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// gate applies Decide to every call before any handler runs: registered services (KV, Watch,
// Lease, Maintenance) through the interceptors, everything else through the unknown-service handler.
//
// The budget (amounts: rates, storage, keys, watches, the core's headroom) is applied after the method
// and lease checks, so a refused method never consumes a tenant's budget.
type gate struct {
	lg      *zap.Logger
	leases  leaseBook
	budget  *budget
	refused *prometheus.CounterVec // labels: method (bounded by MetricLabel), code
	// rangeBytes: what Range answers carried to the tenant, the core's cost of its reads (an API server
	// that reads consistently from its watch cache reads almost nothing here).
	rangeBytes prometheus.Counter
	pages      *pager // reads larger than the reads-in-flight limit, in pages (nil: none)
}

func newGate(lg *zap.Logger, leases leaseBook, b *budget) *gate {
	return &gate{lg: lg, leases: leases, budget: b, refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "etcdproxy_guard_refused_total",
		Help: "Calls the guard refused (PermissionDenied) or does not implement (Unimplemented), by method.",
	}, []string{"method", "code"}), rangeBytes: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "etcdproxy_guard_range_response_bytes_total",
		Help: "Bytes of the Range answers the core gave this replica's tenants (keys, values, headers).",
	})}
}

func (g *gate) refuse(ctx context.Context, method string, code codes.Code, msg string) error {
	g.refused.WithLabelValues(MetricLabel(method), code.String()).Inc()
	if code == codes.PermissionDenied {
		addr := ""
		if p, ok := peer.FromContext(ctx); ok {
			addr = p.Addr.String()
		}
		g.lg.Warn("refused", zap.String("method", method), zap.String("peer", addr))
	}
	return status.Error(code, msg)
}

func (g *gate) decision(ctx context.Context, method string) error {
	action, msg := Decide(method)
	switch action {
	case Forward, LocalStatus:
		return nil
	case Unimplemented:
		return g.refuse(ctx, method, codes.Unimplemented, msg)
	default:
		return g.refuse(ctx, method, codes.PermissionDenied, msg)
	}
}

func (g *gate) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := g.decision(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	if err := g.budget.AdmitCall(ctx); err != nil {
		return nil, err
	}
	forward := handler
	if grant, ok := req.(*pb.LeaseGrantRequest); ok {
		if msg := LeaseGrantRefusal(grant.ID); msg != "" {
			return nil, g.refuse(ctx, info.FullMethod, codes.PermissionDenied, msg)
		}
		forward = func(ctx context.Context, req any) (any, error) { return g.grant(ctx, req, handler) }
	} else if err := g.ownLeasesOnly(ctx, info.FullMethod, req); err != nil {
		return nil, err
	}
	held, err := g.budget.AdmitWrite(ctx, req)
	if err != nil {
		return nil, err
	}
	reading, size := func() {}, g.budget.readBytesOf(req)
	if r, ok := req.(*pb.RangeRequest); ok && g.pages.Large(r, size) {
		forward = func(ctx context.Context, _ any) (any, error) { return g.pages.Range(ctx, r) } // admitted by page
	} else if reading, err = g.budget.AdmitRead(ctx, req, size); err != nil {
		g.budget.Settle(held, nil, err)
		return nil, err
	}
	resp, err := forward(ctx, req)
	reading()
	g.budget.Settle(held, resp, err)
	if err == nil {
		g.budget.SawRevision(resp)
	}
	if r, ok := resp.(*pb.RangeResponse); ok && err == nil {
		g.rangeBytes.Add(float64(r.Size()))
	}
	return resp, err
}

// ownLeasesOnly refuses a write that attaches keys to a lease not granted through this endpoint.
func (g *gate) ownLeasesOnly(ctx context.Context, method string, req any) error {
	for _, id := range leasesIn(req) {
		owns, err := g.leases.Owns(ctx, id)
		if err != nil {
			return status.Errorf(codes.Unavailable, "checking lease %x: %v", id, err)
		}
		if !owns {
			// The same answer whether the lease exists elsewhere or not at all: no oracle.
			return g.refuse(ctx, method, codes.PermissionDenied, fmt.Sprintf(
				"%s with lease %x is not allowed through the etcdproxy guard: only leases granted through "+
					"this endpoint can be attached", method, id))
		}
	}
	return nil
}

// grant forwards a LeaseGrant within the tenant's lease limit and records the new lease as this tenant's
// before answering.
func (g *gate) grant(ctx context.Context, req any, handler grpc.UnaryHandler) (any, error) {
	done, err := g.budget.AdmitLease(ctx, g.leases.Count)
	if err != nil {
		return nil, err
	}
	defer done()
	resp, err := handler(ctx, req)
	if err != nil {
		return resp, err
	}
	granted, ok := resp.(*pb.LeaseGrantResponse)
	if !ok || granted.ID == 0 {
		return resp, nil // an error inside the response (granted.Error) goes back as it is
	}
	if err := g.leases.Record(ctx, granted.ID); err != nil {
		// Unrecorded, the lease is useless to the tenant; it expires by its TTL.
		return nil, status.Errorf(codes.Unavailable, "lease %x granted but not recorded, retry: %v", granted.ID, err)
	}
	return resp, nil
}

func (g *gate) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := g.decision(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	if info.FullMethod != methodWatch {
		if err := g.budget.AdmitCall(ss.Context()); err != nil {
			return err
		}
		return handler(srv, ss)
	}
	if err := g.budget.AdmitStream(ss.Context()); err != nil {
		return err
	}
	defer g.budget.ReleaseStream()
	ws := &watchStream{ServerStream: ss, b: g.budget}
	defer ws.done()
	return handler(srv, ws)
}

// Unknown handles services the guard does not register (Cluster, Auth, Election, Lock, anything
// else) and unknown methods of registered ones (KV/RangeStream).
func (g *gate) Unknown(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	if err := g.decision(ss.Context(), method); err != nil {
		return err
	}
	return g.refuse(ss.Context(), method, codes.PermissionDenied, method+" is not allowed through the etcdproxy guard")
}

// statusServer answers Maintenance/Status with a version and nothing else about the core cluster. The
// gate lets no other Maintenance method reach it.
//
// The version is the core's own (its lowest member's, from the budget's size polls) unless
// --report-version sets one: an API server decides from it whether to send watch progress requests
// (etcd >= 3.5.13 or >= 3.4.31) and so whether to serve consistent reads from its watch cache. The
// guard passes those requests to the core on the tenant's own stream (watch.go), so the core's answer
// is the one the tenant would get from the core directly. Before the first poll answered it is
// Unavailable (API servers retry), never a guess.
//
// The sizes it reports are the tenant's own: its live bytes as database size and size in use, its
// storage limit as quota. So `etcdctl endpoint status` works (it divides by the size, which is never
// reported as 0) and a tenant API server's storage size metric shows the tenant's data.
type statusServer struct {
	pb.UnimplementedMaintenanceServer
	version string
	budget  *budget
}

func (s *statusServer) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	version := s.version
	if version == "" && s.budget != nil {
		version = s.budget.core.Version()
	}
	if version == "" {
		return nil, status.Error(codes.Unavailable, "etcdproxy guard: the core etcd's version is not known yet; retry shortly")
	}
	resp := &pb.StatusResponse{Header: &pb.ResponseHeader{}, Version: version, DbSize: 1}
	if s.budget != nil {
		u := s.budget.usage.Snapshot()
		resp.Header.Revision = u.Revision
		resp.DbSize, resp.DbSizeInUse, resp.DbSizeQuota = max(u.Bytes, 1), u.Bytes, s.budget.limits.Storage
	}
	return resp, nil
}

// knownOnlyUnary and knownOnlyStream run a (metrics) interceptor only for etcd's own methods: gRPC
// metrics label series by method name, and a tenant must not be able to create series at will.
// Calls to invented methods are still refused by the gate and counted as "other".
func knownOnlyUnary(in grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !knownMethods[info.FullMethod] {
			return handler(ctx, req)
		}
		return in(ctx, req, info, handler)
	}
}

func knownOnlyStream(in grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !knownMethods[info.FullMethod] {
			return handler(srv, ss)
		}
		return in(srv, ss, info, handler)
	}
}
