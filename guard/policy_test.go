package main

import (
	"strings"
	"testing"
)

func TestOnlyWhatAnAPIServerNeedsIsForwarded(t *testing.T) {
	want := map[string]bool{
		"/etcdserverpb.KV/Range": true, "/etcdserverpb.KV/Put": true, "/etcdserverpb.KV/DeleteRange": true,
		"/etcdserverpb.KV/Txn": true, "/etcdserverpb.Watch/Watch": true, "/etcdserverpb.Lease/LeaseGrant": true,
	}
	for prefix, methods := range etcdMethods {
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
			case method == "/etcdserverpb.KV/RangeStream":
				if action != Unimplemented {
					t.Errorf("%s: got %v, want Unimplemented", method, action)
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

func TestMetricLabelsAreBounded(t *testing.T) {
	if got := MetricLabel("/etcdserverpb.Maintenance/Snapshot"); got != "/etcdserverpb.Maintenance/Snapshot" {
		t.Errorf("known method: %q", got)
	}
	for _, m := range []string{"/etcdserverpb.Cluster/Invented123", "/x.Y/Z", ""} {
		if got := MetricLabel(m); got != "other" {
			t.Errorf("%q: %q", m, got)
		}
	}
}
