package main

import (
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"
	"go.uber.org/zap"
)

// coreClient is the guard's one connection to the core etcd: client is namespaced to the tenant's
// prefix (what the tenant reaches); rawKV and rawLease are not, for what lives outside every prefix
// (lease markers, usage reports).
type coreClient struct {
	client   *clientv3.Client
	rawKV    clientv3.KV
	rawLease clientv3.Lease
}

func dialCore(o options, lg *zap.Logger) (*coreClient, error) {
	coreTLS, err := (&transport.TLSInfo{CertFile: o.coreCert, KeyFile: o.coreKey, TrustedCAFile: o.coreCA}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("core etcd TLS material: %w", err)
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:            strings.Split(o.endpoints, ","),
		TLS:                  coreTLS,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    30 * time.Second,
		DialKeepAliveTimeout: 10 * time.Second,
		Logger:               lg.Named("core"),
	})
	if err != nil {
		return nil, fmt.Errorf("core etcd client: %w", err)
	}
	c := &coreClient{client: client, rawKV: client.KV, rawLease: client.Lease}
	// The same wrapping `etcd grpc-proxy --namespace` does: every key, range end, compare and
	// watch is moved under the prefix, and keys come back without it.
	client.KV = namespace.NewKV(client.KV, o.namespace)
	client.Watcher = namespace.NewWatcher(client.Watcher, o.namespace)
	client.Lease = namespace.NewLease(client.Lease, o.namespace)
	return c, nil
}
