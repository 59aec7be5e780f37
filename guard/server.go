package main

import (
	"math"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// newServer is the tenant endpoint: etcd's grpcproxy KV and Lease servers over the namespaced client,
// Watch streams passed one-to-one to the core (watch.go), Maintenance answered by the guard itself,
// every call through the gate.
func newServer(o options, serving *servingTLS, g *gate, client *clientv3.Client, b *budget, m *metrics,
	lg *zap.Logger) (*grpc.Server, error) {
	kvp, _ := grpcproxy.NewKvProxy(client)
	leasep, _ := grpcproxy.NewLeaseProxy(client.Ctx(), client)
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(serving.ServerConfig())),
		grpc.ChainUnaryInterceptor(knownOnlyUnary(m.grpc.UnaryServerInterceptor()), g.Unary),
		grpc.ChainStreamInterceptor(knownOnlyStream(m.grpc.StreamServerInterceptor()), g.Stream),
		grpc.UnknownServiceHandler(g.Unknown),
		// API servers' etcd clients ping every 30 s, also while idle.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
		grpc.MaxRecvMsgSize(o.maxRequestBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
	)
	pb.RegisterKVServer(srv, kvp)
	pb.RegisterWatchServer(srv, newWatchServer(client.ActiveConnection(), o.namespace))
	pb.RegisterLeaseServer(srv, leasep)
	pb.RegisterMaintenanceServer(srv, &statusServer{version: o.reportVersion, budget: b})
	m.grpc.InitializeMetrics(srv)
	return srv, nil
}
