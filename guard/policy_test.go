package main

import (
	"strings"
	"testing"
)

// Every method of etcd's v3 API (rpc.proto, v3election.proto, v3lock.proto in etcd v3.6).
var allMethods = map[string][]string{
	"/etcdserverpb.KV/":    {"Range", "Put", "DeleteRange", "Txn", "Compact"},
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

func TestOnlyWhatAnAPIServerNeedsIsForwarded(t *testing.T) {
	want := map[string]bool{
		"/etcdserverpb.KV/Range": true, "/etcdserverpb.KV/Put": true, "/etcdserverpb.KV/DeleteRange": true,
		"/etcdserverpb.KV/Txn": true, "/etcdserverpb.Watch/Watch": true, "/etcdserverpb.Lease/LeaseGrant": true,
	}
	for prefix, methods := range allMethods {
		for _, m := range methods {
			method := prefix + m
			action, msg := Decide(method)
			switch {
			case want[method]:
				if action != Forward {
					t.Errorf("%s: got %v, want Forward", method, action)
				}
			case method == methodStatus:
				if action != LocalStatus {
					t.Errorf("%s: got %v, want LocalStatus", method, action)
				}
			default:
				if action != Deny || !strings.Contains(msg, method) || !strings.Contains(msg, "not allowed") {
					t.Errorf("%s: got %v %q, want Deny naming the method", method, action, msg)
				}
			}
		}
	}
}

func TestUnknownAndFutureMethodsAreDenied(t *testing.T) {
	for _, m := range []string{"/etcdserverpb.KV/Future", "/grpc.health.v1.Health/Check", "/x.Y/Z", ""} {
		if action, _ := Decide(m); action != Deny {
			t.Errorf("%q: got %v, want Deny", m, action)
		}
	}
}

func TestRangeStreamIsUnimplementedSoAPIServersFallBack(t *testing.T) {
	if action, msg := Decide("/etcdserverpb.KV/RangeStream"); action != Unimplemented ||
		!strings.Contains(msg, "RangeStream") {
		t.Errorf("got %v %q", action, msg)
	}
}

func TestReasonsTellTheCallerWhatToDo(t *testing.T) {
	if _, msg := Decide("/etcdserverpb.KV/Compact"); !strings.Contains(msg, "--etcd-compaction-interval=0") {
		t.Errorf("Compact: %q", msg)
	}
	if _, msg := Decide("/etcdserverpb.Lease/LeaseRevoke"); !strings.Contains(msg, "cluster-wide") {
		t.Errorf("LeaseRevoke: %q", msg)
	}
	if _, msg := Decide("/etcdserverpb.Maintenance/Snapshot"); !strings.Contains(msg, "shared core cluster") {
		t.Errorf("Snapshot: %q", msg)
	}
}

func TestLeaseGrantOnlyWithoutAChosenID(t *testing.T) {
	if msg := LeaseGrantRefusal(0); msg != "" {
		t.Errorf("ID 0 refused: %q", msg)
	}
	if msg := LeaseGrantRefusal(42); !strings.Contains(msg, "chosen ID (42)") {
		t.Errorf("ID 42: %q", msg)
	}
}
