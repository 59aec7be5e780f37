package main

import (
	"fmt"
	"strings"
)

// Action is how the guard handles one gRPC method.
type Action int

const (
	// Forward: served inside the tenant prefix (grpcproxy KV and Lease servers, watch.go for Watch).
	Forward Action = iota
	// LocalStatus: Maintenance/Status, answered by the guard itself.
	LocalStatus
	// Unimplemented: KV/RangeStream; k8s.io/apiserver 1.37 falls back to Range only on UNIMPLEMENTED.
	Unimplemented
	// Deny: PERMISSION_DENIED with a message naming the method.
	Deny
)

const (
	methodStatus     = "/etcdserverpb.Maintenance/Status"
	methodLeaseGrant = "/etcdserverpb.Lease/LeaseGrant"
	methodWatch      = "/etcdserverpb.Watch/Watch"
	leaseReason      = "lease IDs are cluster-wide and guessable; only LeaseGrant is allowed"
)

// forwarded is what k8s.io/apiserver (1.34-1.37) calls on etcd, plus Put and DeleteRange, which are
// namespaced exactly like Txn. Everything not listed here is refused (default deny).
var forwarded = map[string]bool{
	"/etcdserverpb.KV/Range":       true,
	"/etcdserverpb.KV/Put":         true,
	"/etcdserverpb.KV/DeleteRange": true,
	"/etcdserverpb.KV/Txn":         true,
	methodWatch:                    true,
	methodLeaseGrant:               true,
}

var unimplemented = map[string]bool{
	"/etcdserverpb.KV/RangeStream": true,
}

var methodReasons = map[string]string{
	"/etcdserverpb.KV/Compact": "compaction is cluster-wide (it removes every tenant's history); " +
		"run the tenant API server with --etcd-compaction-interval=0",
	"/etcdserverpb.Lease/LeaseRevoke":     leaseReason,
	"/etcdserverpb.Lease/LeaseKeepAlive":  leaseReason,
	"/etcdserverpb.Lease/LeaseTimeToLive": leaseReason,
	"/etcdserverpb.Lease/LeaseLeases":     leaseReason,
}

var serviceReasons = []struct{ prefix, reason string }{
	{"/etcdserverpb.Maintenance/", "maintenance acts on the shared core cluster"},
	{"/etcdserverpb.Cluster/", "membership of the shared core cluster is not tenant business"},
	{"/etcdserverpb.Auth/", "authentication of the shared core cluster is not tenant business"},
	{"/v3electionpb.Election/", "election is not namespaced"},
	{"/v3lockpb.Lock/", "lock is not namespaced"},
}

// etcdMethods is every method of etcd's v3 API (rpc.proto, v3election.proto, v3lock.proto in etcd
// v3.6, plus RangeStream of later versions). Metrics label a method by name only if it is listed
// here, so a tenant cannot grow label cardinality with invented names.
var etcdMethods = map[string][]string{
	"/etcdserverpb.KV/":    {"Range", "Put", "DeleteRange", "Txn", "Compact", "RangeStream"},
	"/etcdserverpb.Watch/": {"Watch"},
	"/etcdserverpb.Lease/": {"LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive", "LeaseLeases"},
	"/etcdserverpb.Cluster/": {"MemberAdd", "MemberRemove", "MemberUpdate", "MemberList",
		"MemberPromote"},
	"/etcdserverpb.Maintenance/": {"Alarm", "Status", "Defragment", "Hash", "HashKV", "Snapshot",
		"MoveLeader", "Downgrade"},
	"/etcdserverpb.Auth/": {"AuthEnable", "AuthDisable", "AuthStatus", "Authenticate", "UserAdd", "UserGet",
		"UserList", "UserDelete", "UserChangePassword", "UserGrantRole", "UserRevokeRole", "RoleAdd",
		"RoleGet", "RoleList", "RoleDelete", "RoleGrantPermission", "RoleRevokePermission"},
	"/v3electionpb.Election/": {"Campaign", "Proclaim", "Leader", "Observe", "Resign"},
	"/v3lockpb.Lock/":         {"Lock", "Unlock"},
}

var knownMethods = func() map[string]bool {
	out := map[string]bool{}
	for prefix, methods := range etcdMethods {
		for _, m := range methods {
			out[prefix+m] = true
		}
	}
	return out
}()

// MetricLabel is the method as a metric label: its name if it is an etcd method, else "other".
func MetricLabel(method string) string {
	if knownMethods[method] {
		return method
	}
	return "other"
}

// Decide returns the handling of a full gRPC method name ("/package.Service/Method") and, for
// Unimplemented and Deny, the message sent to the caller.
func Decide(method string) (Action, string) {
	switch {
	case forwarded[method]:
		return Forward, ""
	case method == methodStatus:
		return LocalStatus, ""
	case unimplemented[method]:
		return Unimplemented, method + " is not implemented by the etcdproxy guard"
	}
	reason, ok := methodReasons[method]
	if !ok {
		reason = "only the etcd methods an API server needs are allowed"
		for _, s := range serviceReasons {
			if strings.HasPrefix(method, s.prefix) {
				reason = s.reason
				break
			}
		}
	}
	return Deny, method + " is not allowed through the etcdproxy guard: " + reason
}

// LeaseGrantRefusal says why a LeaseGrant is refused, or "" if it may go through. A chosen ID would
// tell the tenant which IDs other tenants hold ("lease already exists"); API servers send ID 0.
func LeaseGrantRefusal(id int64) string {
	if id == 0 {
		return ""
	}
	return fmt.Sprintf("%s with a chosen ID (%d) is not allowed through the etcdproxy guard: "+
		"lease IDs are cluster-wide; leave ID 0 so etcd picks one", methodLeaseGrant, id)
}
