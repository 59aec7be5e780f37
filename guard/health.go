package main

import (
	"context"
	"net/http"
	"sync"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
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
// attempted (the operator reads it for the status); /metrics for Prometheus. Each change of /readyz's
// answer is logged (readiness), since the kubelet's probe Event carries only the status code.
func healthHandler(client *clientv3.Client, b *budget, registry *prometheus.Registry, lg *zap.Logger) http.Handler {
	mux := http.NewServeMux()
	said := &readiness{lg: lg}
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		cause, why := "", ""
		if _, err := client.KV.Get(ctx, "health"); err != nil {
			cause, why = "core", "core etcd not reachable: "+err.Error()
		} else if !b.usage.Snapshot().Synced || !b.core.State().Sampled {
			cause, why = "usage", "reading the tenant's usage and the core's size"
		} else if !b.published.Load() {
			cause, why = "report", "publishing the first usage record"
		}
		said.answer(cause, why)
		if cause != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// readiness logs /readyz's answer when its cause changes (not at every probe): "not ready" with the
// reason, "ready" when it is.
type readiness struct {
	mu    sync.Mutex
	cause string // of the last answer: "" ready, else which check failed
	once  bool   // an answer was given
	lg    *zap.Logger
}

func (r *readiness) answer(cause, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.once && cause == r.cause {
		return
	}
	r.once, r.cause = true, cause
	if cause != "" {
		r.lg.Warn("not ready", zap.String("reason", why))
	} else {
		r.lg.Info("ready")
	}
}
