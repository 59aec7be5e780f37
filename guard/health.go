package main

import (
	"context"
	"net/http"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// metrics: what /metrics serves.
type metrics struct {
	registry   *prometheus.Registry
	grpc       *grpcprom.ServerMetrics
	tlsReloads prometheus.Counter
}

func newMetrics(g *gate, b *budget) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		grpc:     grpcprom.NewServerMetrics(),
		tlsReloads: prometheus.NewCounter(prometheus.CounterOpts{Name: "etcdproxy_guard_tls_reloads_total",
			Help: "Times the serving certificate, key or tenant client CA bundle was reloaded from its files."}),
	}
	m.registry.MustRegister(m.grpc, g.refused, g.rangeBytes, m.tlsReloads, b.limited, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.registry.MustRegister(b.gauges()...)
	return m
}

// healthHandler: /livez answers while the process runs; /readyz does a linearizable read of
// <prefix>health through the core, like an API server's etcd check, and waits until the tenant's usage
// and the core's size are known (limits cannot be enforced before) and the first usage record was
// attempted (the operator reads it for the status); /metrics for Prometheus.
func healthHandler(client *clientv3.Client, b *budget, registry *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if _, err := client.KV.Get(ctx, "health"); err != nil {
			http.Error(w, "core etcd not reachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if !b.usage.Snapshot().Synced || !b.core.State().Sampled {
			http.Error(w, "reading the tenant's usage and the core's size", http.StatusServiceUnavailable)
			return
		}
		if !b.published.Load() {
			http.Error(w, "publishing the first usage record", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
