package main

import (
	"context"
	"strconv"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Lease IDs are cluster-wide. A tenant may attach its keys only to leases it was granted through its
// endpoint; otherwise a Put naming another ID would answer "lease not found" or succeed, telling the
// tenant which IDs other tenants hold. Ownership is recorded in the core itself, so every replica of the
// endpoint agrees: a marker key outside every tenant prefix (tenant prefixes start with "/"), attached
// to the lease so that it disappears with it.

// leaseBook records and answers lease ownership for one tenant, and counts the tenant's live leases.
type leaseBook interface {
	Record(ctx context.Context, id int64) error
	Owns(ctx context.Context, id int64) (bool, error)
	Count(ctx context.Context) (int64, error)
}

// The operator's cleanup reads these markers to revoke a deleted tenant's leases (deletionPolicy Delete;
// LEASE_MARKER_ROOT in the collection's module_utils/keyspace.py): the two spell the same layout.
const leaseMarkerRoot = "\x00etcdproxy-guard/leases"

// leaseMarkerKey is the core key recording that the tenant with prefix owns lease id.
func leaseMarkerKey(prefix string, id int64) string {
	return leaseMarkerRoot + prefix + strconv.FormatInt(id, 16)
}

// leasesIn lists the lease IDs a KV request attaches keys to (Put, and Puts anywhere in a Txn).
func leasesIn(req any) []int64 {
	var out []int64
	var walk func(ops []*pb.RequestOp)
	walk = func(ops []*pb.RequestOp) {
		for _, op := range ops {
			if put := op.GetRequestPut(); put != nil && put.Lease != 0 {
				out = append(out, put.Lease)
			}
			if txn := op.GetRequestTxn(); txn != nil {
				walk(txn.Success)
				walk(txn.Failure)
			}
		}
	}
	switch r := req.(type) {
	case *pb.PutRequest:
		if r.Lease != 0 {
			out = append(out, r.Lease)
		}
	case *pb.TxnRequest:
		walk(r.Success)
		walk(r.Failure)
	}
	return out
}

// coreLeaseBook keeps the markers in the core (through the un-namespaced client) and remembers the
// leases it has confirmed, so a lease costs one extra read per replica, not one per write.
type coreLeaseBook struct {
	kv     clientv3.KV
	prefix string

	mu    sync.Mutex
	known map[int64]bool
}

const leaseCacheSize = 10000

func newCoreLeaseBook(kv clientv3.KV, prefix string) *coreLeaseBook {
	return &coreLeaseBook{kv: kv, prefix: prefix, known: map[int64]bool{}}
}

func (b *coreLeaseBook) remember(id int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.known) >= leaseCacheSize {
		b.known = map[int64]bool{}
	}
	b.known[id] = true
}

func (b *coreLeaseBook) Record(ctx context.Context, id int64) error {
	if _, err := b.kv.Put(ctx, leaseMarkerKey(b.prefix, id), "", clientv3.WithLease(clientv3.LeaseID(id))); err != nil {
		return err
	}
	b.remember(id)
	return nil
}

func (b *coreLeaseBook) Owns(ctx context.Context, id int64) (bool, error) {
	b.mu.Lock()
	hit := b.known[id]
	b.mu.Unlock()
	if hit {
		return true, nil
	}
	resp, err := b.kv.Get(ctx, leaseMarkerKey(b.prefix, id), clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	if resp.Count == 0 {
		return false, nil
	}
	b.remember(id)
	return true, nil
}

// Count is the number of the tenant's leases the core still holds: its markers, which go only when the
// core revokes the lease (an expired lease the core has not revoked yet still counts, as it still costs
// the core). Every replica writes its markers under the same prefix, so the count is the tenant's.
func (b *coreLeaseBook) Count(ctx context.Context) (int64, error) {
	return b.count(ctx)
}

// Seen is Count as the core member the replica talks to last saw it (a serializable read, no consensus
// round): for the usage record, which tolerates a moment's lag and is read by every replica of every tenant.
func (b *coreLeaseBook) Seen(ctx context.Context) (int64, error) {
	return b.count(ctx, clientv3.WithSerializable())
}

func (b *coreLeaseBook) count(ctx context.Context, opts ...clientv3.OpOption) (int64, error) {
	opts = append(opts, clientv3.WithPrefix(), clientv3.WithCountOnly())
	resp, err := b.kv.Get(ctx, leaseMarkerRoot+b.prefix, opts...)
	if err != nil {
		return 0, err
	}
	return resp.Count, nil
}
