package main

import (
	"bytes"
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// watchServer serves each tenant Watch stream over a Watch stream of its own to the core, request for
// request and response for response. Keys move under the tenant's prefix on the way in and come back
// without it; everything else — watch ids, revisions, progress requests and notifications, compaction
// and cancellation answers, fragments, headers — is what the core etcd itself says, in its order.
//
// etcd's grpcproxy coalesces the watches of all clients onto shared core streams, and so cannot answer
// a progress request (it drops them: etcd issue 19710); a progress answer is about one stream's watches.
// One core stream per tenant stream keeps etcd's meaning exactly: the core answers a progress request
// once every watch of that stream has caught up, with the revision it has reached. That is what lets an
// API server serve consistent reads from its watch cache instead of reading every object again.
//
// Cost to the core: one stream per tenant stream (an API server opens one and multiplexes every watch on
// it), bounded like the watches themselves (budget.AdmitStream).
type watchServer struct {
	core   pb.WatchClient // on the guard's un-namespaced connection to the core
	prefix []byte
	end    []byte // the first key after every key under prefix
}

func newWatchServer(conn *grpc.ClientConn, prefix string) *watchServer {
	return &watchServer{core: pb.NewWatchClient(conn), prefix: []byte(prefix),
		end: []byte(clientv3.GetPrefixRangeEnd(prefix))}
}

func (w *watchServer) Watch(tenant pb.Watch_WatchServer) error {
	ctx, cancel := context.WithCancel(outgoingLeaderRequirement(tenant.Context()))
	defer cancel()
	core, err := w.core.Watch(ctx)
	if err != nil {
		return coreError(err)
	}
	errc := make(chan error, 2)
	go func() {
		// etcd keeps a stream whose client closed its sending side: its watches still deliver.
		if err := w.forwardRequests(tenant, core); err != nil {
			errc <- err
		}
	}()
	go func() { errc <- w.forwardResponses(core, tenant) }()
	select {
	case err = <-errc:
	case <-tenant.Context().Done():
		err = tenant.Context().Err()
	}
	return err
}

func (w *watchServer) forwardRequests(tenant pb.Watch_WatchServer, core pb.Watch_WatchClient) error {
	for {
		req, err := tenant.Recv()
		if errors.Is(err, io.EOF) {
			return core.CloseSend()
		}
		if err != nil {
			return err
		}
		if c := req.GetCreateRequest(); c != nil {
			c.Key, c.RangeEnd = w.inward(c.Key, c.RangeEnd)
		}
		if err := core.Send(req); errors.Is(err, io.EOF) {
			return nil // the core ended the stream: forwardResponses reports its status
		} else if err != nil {
			return coreError(err)
		}
	}
}

func (w *watchServer) forwardResponses(core pb.Watch_WatchClient, tenant pb.Watch_WatchServer) error {
	for {
		resp, err := core.Recv()
		if err != nil {
			return coreError(err)
		}
		for _, ev := range resp.Events {
			if !w.outward(ev.Kv) || !w.outward(ev.PrevKv) {
				// Never a key of another tenant or of the main cluster: end the stream instead.
				return status.Error(codes.Internal, "etcdproxy guard: the core sent a key outside the tenant's prefix")
			}
		}
		if err := tenant.Send(resp); err != nil {
			return err
		}
	}
}

// inward is a tenant's watched range [key, end) under the prefix, with etcd's conventions: an empty end
// watches the key alone; "\x00" means every key from key on, here every key up to the prefix's end.
func (w *watchServer) inward(key, end []byte) ([]byte, []byte) {
	k := append(bytes.Clone(w.prefix), key...)
	switch {
	case len(end) == 0:
		return k, nil
	case len(end) == 1 && end[0] == 0:
		return k, bytes.Clone(w.end)
	default:
		return k, append(bytes.Clone(w.prefix), end...)
	}
}

// outward strips the prefix from a key the core sent; false if the key is not under it.
func (w *watchServer) outward(kv *mvccpb.KeyValue) bool {
	if kv == nil {
		return true
	}
	key, ok := bytes.CutPrefix(kv.Key, w.prefix)
	kv.Key = key
	return ok
}

// coreError passes a status the core (or the connection to it) gave on as it is, so a tenant's client
// sees what it would see from etcd (Unavailable: reconnect and resume from its last revision).
func coreError(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Unavailable, "etcdproxy guard: core etcd watch: "+err.Error())
}

// outgoingLeaderRequirement carries a client's "fail my watches when the core has no leader"
// (clientv3.WithRequireLeader, which API servers set) to the core stream.
func outgoingLeaderRequirement(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(rpctypes.MetadataRequireLeaderKey); len(v) > 0 {
		return metadata.AppendToOutgoingContext(ctx, rpctypes.MetadataRequireLeaderKey, v[0])
	}
	return ctx
}
