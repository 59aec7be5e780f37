// Command etcdproxy-guard is a tenant's etcd endpoint: etcd's own grpcproxy KV and Lease servers over a
// client namespaced to /<name>/ (what `etcd grpc-proxy --namespace` runs) and Watch streams passed
// one-to-one to the core inside that prefix (watch.go), behind a method-level gate. It terminates the tenant's mutual TLS with the tenant client CA, forwards only
// what an API server needs, answers Maintenance/Status itself and refuses the rest.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
)

type options struct {
	namespace, endpoints, coreCA, coreCert, coreKey string
	listen, certFile, keyFile, trustedCAFile        string
	revokedClientsFile                              string
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
	fs.StringVar(&o.revokedClientsFile, "revoked-clients-file", "", "lines \"<notAfter> <Common Name>\" of client "+
		"certificates to refuse (re-read; a missing file revokes nothing)")
	fs.StringVar(&o.healthListen, "health-listen", "", "host:port for HTTP /livez, /readyz and /metrics (off if empty)")
	fs.StringVar(&o.reportVersion, "report-version", "",
		"etcd version answered to Maintenance/Status (empty: the core's, its lowest member's); API servers send "+
			"watch progress requests, and serve consistent reads from their watch cache, from 3.5.13 (3.4.31) on")
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
	serving, err := newServingTLS(o.certFile, o.keyFile, o.trustedCAFile, o.revokedClientsFile)
	if err != nil {
		return fmt.Errorf("serving TLS material: %w", err)
	}
	serving.onError = func(err error) { lg.Warn("tls", zap.Error(err)) }
	core, err := dialCore(o, lg)
	if err != nil {
		return err
	}
	defer core.client.Close()

	// Amounts: the tenant's usage (followed by watch), the core's headroom (polled), the budget over both.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	tenant := newUsage(int64(o.maxRequestBytes))
	room := newHeadroom(o.coreReservePercent, o.coreQuotaBytes)
	tenant.onPut = func(k, v int) { room.Seen(int64(len(o.namespace) + k + v + kvOverhead)) }
	go tenant.follow(ctx, core.client.KV, core.client.Watcher, lg.Named("usage"))
	go room.poll(ctx, core.client.Maintenance, core.client.Endpoints(), lg.Named("headroom"))
	b := newBudget(o.namespace, o.limits, o.maxRequestBytes, tenant, room)
	replica, _ := os.Hostname() // the pod name
	leases := newCoreLeaseBook(core.rawKV, o.namespace)
	go b.publish(ctx, core.rawKV, core.rawLease, replica, leases.Seen, lg.Named("report"))

	g := newGate(lg.Named("gate"), leases, b)
	g.pages = &pager{kv: core.client.KV, budget: b}
	m := newMetrics(g, b)
	serving.onReload = func(n int) {
		m.tlsReloads.Inc()
		lg.Info("serving TLS material reloaded", zap.Int("reloads", n))
	}
	srv, err := newServer(o, serving, g, core.client, b, m, lg)
	if err != nil {
		return err
	}

	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(l) }()
	var health *http.Server
	if o.healthListen != "" {
		health = &http.Server{Addr: o.healthListen, Handler: healthHandler(core.client, b, m.registry, lg.Named("readyz")),
			ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := health.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	lg.Info("guard listening", zap.String("listen", o.listen), zap.String("namespace", o.namespace),
		zap.String("health", o.healthListen), zap.String("report-version", o.reportVersion),
		zap.Any("limits", o.limits), zap.Int("core-reserve-percent", o.coreReservePercent))
	return serveUntilSignal(srv, health, errc, lg)
}

// serveUntilSignal returns on SIGTERM/SIGINT (after a graceful stop of at most 5 s) or a serving error.
func serveUntilSignal(srv *grpc.Server, health *http.Server, errc <-chan error, lg *zap.Logger) error {
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
