// Command etcdproxy-guard is a tenant's etcd endpoint: etcd's own grpcproxy KV, Watch and Lease
// servers over a client namespaced to /<name>/ (what `etcd grpc-proxy --namespace` runs), behind a
// method-level gate. It terminates the tenant's mutual TLS with the tenant client CA, forwards only
// what an API server needs, answers Maintenance/Status itself and refuses the rest.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

type options struct {
	namespace, endpoints, coreCA, coreCert, coreKey string
	listen, certFile, keyFile, trustedCAFile        string
	healthListen, reportVersion                     string
	maxRequestBytes                                 int
	limits                                          Limits
	coreReservePercent                              int
	coreQuotaBytes                                  int64
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("etcdproxy-guard", flag.ContinueOnError)
	fs.StringVar(&o.namespace, "namespace", "", "key prefix of this tenant in the core etcd, e.g. /<name>/ (required)")
	fs.StringVar(&o.endpoints, "endpoints", "", "comma-separated core etcd client URLs (required)")
	fs.StringVar(&o.coreCA, "cacert", "", "CA bundle of the core etcd")
	fs.StringVar(&o.coreCert, "cert", "", "client certificate for the core etcd")
	fs.StringVar(&o.coreKey, "key", "", "client key for the core etcd")
	fs.StringVar(&o.listen, "listen", "0.0.0.0:2379", "host:port for tenants (TLS, client certificate required)")
	fs.StringVar(&o.certFile, "cert-file", "", "serving certificate (re-read when it changes)")
	fs.StringVar(&o.keyFile, "key-file", "", "serving key (re-read when it changes)")
	fs.StringVar(&o.trustedCAFile, "trusted-ca-file", "", "CA bundle tenant client certificates must chain to (re-read)")
	fs.StringVar(&o.healthListen, "health-listen", "", "host:port for HTTP /livez, /readyz and /metrics (off if empty)")
	fs.StringVar(&o.reportVersion, "report-version", "3.5.0",
		"etcd version answered to Maintenance/Status; below 3.5.13 API servers do not send watch progress requests")
	fs.IntVar(&o.maxRequestBytes, "max-request-bytes", 4<<20, "largest request a tenant may send")
	limitValues := map[string]*string{}
	for _, f := range limitFields {
		kind := "a count"
		if f.quantity {
			kind = "a quantity such as 512Mi"
		}
		limitValues[f.flag] = fs.String(f.flag, "", "tenant limit, "+f.spec+" ("+kind+"; empty or 0: none)")
	}
	fs.IntVar(&o.coreReservePercent, "core-reserve-percent", 20,
		"share of the core etcd's space quota tenants may not use (kept for the main cluster)")
	coreQuota := fs.String("core-quota-bytes", "", "the core's space quota when its Status reports none "+
		"(etcd < 3.6, or no --quota-backend-bytes); default etcd's 2Gi")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for _, f := range limitFields {
		v, err := parseLimit(f.flag, *limitValues[f.flag], f.quantity)
		if err != nil {
			return o, err
		}
		f.set(&o.limits, v)
	}
	q, err := parseLimit("core-quota-bytes", *coreQuota, true)
	if err != nil {
		return o, err
	}
	o.coreQuotaBytes = q
	if o.coreReservePercent < 0 || o.coreReservePercent > 90 {
		return o, fmt.Errorf("--core-reserve-percent=%d: must be between 0 and 90", o.coreReservePercent)
	}
	var missing []string
	for name, v := range map[string]string{"namespace": o.namespace, "endpoints": o.endpoints, "cacert": o.coreCA,
		"cert": o.coreCert, "key": o.coreKey, "cert-file": o.certFile, "key-file": o.keyFile,
		"trusted-ca-file": o.trustedCAFile} {
		if v == "" {
			missing = append(missing, "--"+name)
		}
	}
	if len(missing) > 0 {
		return o, fmt.Errorf("missing required flags: %s", strings.Join(missing, " "))
	}
	if !strings.HasPrefix(o.namespace, "/") || !strings.HasSuffix(o.namespace, "/") || len(o.namespace) < 3 {
		return o, fmt.Errorf("--namespace=%q: must look like /<name>/ (the trailing slash keeps foo out of foobar)",
			o.namespace)
	}
	return o, nil
}

func main() {
	lg, _ := zap.NewProduction()
	defer func() { _ = lg.Sync() }()
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		lg.Error("cannot start", zap.Error(err))
		os.Exit(2)
	}
	if err := run(o, lg); err != nil {
		lg.Error("cannot start", zap.Error(err))
		os.Exit(1)
	}
}

func run(o options, lg *zap.Logger) error {
	serving, err := newServingTLS(o.certFile, o.keyFile, o.trustedCAFile)
	if err != nil {
		return fmt.Errorf("serving TLS material: %w", err)
	}
	serving.onError = func(err error) { lg.Warn("tls", zap.Error(err)) }

	coreTLS, err := (&transport.TLSInfo{CertFile: o.coreCert, KeyFile: o.coreKey, TrustedCAFile: o.coreCA}).ClientConfig()
	if err != nil {
		return fmt.Errorf("core etcd TLS material: %w", err)
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
		return fmt.Errorf("core etcd client: %w", err)
	}
	defer client.Close()
	leases := newCoreLeaseBook(client.KV, o.namespace) // un-namespaced: markers live outside every prefix
	coreKV, coreLease := client.KV, client.Lease
	// The same wrapping `etcd grpc-proxy --namespace` does: every key, range end, compare and
	// watch is moved under the prefix, and keys come back without it.
	client.KV = namespace.NewKV(client.KV, o.namespace)
	client.Watcher = namespace.NewWatcher(client.Watcher, o.namespace)
	client.Lease = namespace.NewLease(client.Lease, o.namespace)

	kvp, _ := grpcproxy.NewKvProxy(client)
	watchp, _ := grpcproxy.NewWatchProxy(client.Ctx(), lg.Named("watch"), client)
	leasep, _ := grpcproxy.NewLeaseProxy(client.Ctx(), client)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	tenant := newUsage()
	core := newHeadroom(o.coreReservePercent, o.coreQuotaBytes)
	tenant.onPut = func(k, v int) { core.Seen(int64(len(o.namespace) + k + v + kvOverhead)) }
	go tenant.follow(ctx, client.KV, client.Watcher, lg.Named("usage"))
	go core.poll(ctx, client.Maintenance, client.Endpoints(), lg.Named("headroom"))
	b := newBudget(o.namespace, o.limits, o.maxRequestBytes, tenant, core)
	replica, _ := os.Hostname() // the pod name
	go b.publish(ctx, coreKV, coreLease, replica, lg.Named("report"))

	g := newGate(lg.Named("gate"), leases, b)
	grpcMetrics := grpcprom.NewServerMetrics()
	reloads := prometheus.NewCounter(prometheus.CounterOpts{Name: "etcdproxy_guard_tls_reloads_total",
		Help: "Times the serving certificate, key or tenant client CA bundle was reloaded from its files."})
	serving.onReload = func(n int) {
		reloads.Inc()
		lg.Info("serving TLS material reloaded", zap.Int("reloads", n))
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(grpcMetrics, g.refused, reloads, b.limited, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registry.MustRegister(b.gauges()...)

	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(serving.ServerConfig())),
		grpc.ChainUnaryInterceptor(knownOnlyUnary(grpcMetrics.UnaryServerInterceptor()), g.Unary),
		grpc.ChainStreamInterceptor(knownOnlyStream(grpcMetrics.StreamServerInterceptor()), g.Stream),
		grpc.UnknownServiceHandler(g.Unknown),
		// API servers' etcd clients ping every 30 s, also while idle.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
		grpc.MaxRecvMsgSize(o.maxRequestBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
	)
	pb.RegisterKVServer(srv, kvp)
	pb.RegisterWatchServer(srv, watchp)
	pb.RegisterLeaseServer(srv, leasep)
	pb.RegisterMaintenanceServer(srv, &statusServer{version: o.reportVersion, budget: b})
	grpcMetrics.InitializeMetrics(srv)

	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(l) }()

	var health *http.Server
	if o.healthListen != "" {
		health = &http.Server{Addr: o.healthListen, Handler: healthHandler(client, b, registry), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := health.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	lg.Info("guard listening", zap.String("listen", o.listen), zap.String("namespace", o.namespace),
		zap.String("health", o.healthListen), zap.String("report-version", o.reportVersion),
		zap.Any("limits", o.limits), zap.Int("core-reserve-percent", o.coreReservePercent))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		lg.Info("stopping", zap.String("signal", s.String()))
	case err := <-errc:
		return err
	}
	if health != nil {
		_ = health.Close()
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second): // watches never end by themselves
		srv.Stop()
	}
	return nil
}

// healthHandler: /livez answers while the process runs; /readyz does a linearizable read of
// <prefix>health through the core, like an API server's etcd check, and waits until the tenant's usage
// and the core's size are known (limits cannot be enforced before); /metrics for Prometheus.
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
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
