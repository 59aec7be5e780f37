package main

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestWatchedRangesStayUnderThePrefix(t *testing.T) {
	w := newWatchServer(nil, "/t/")
	for _, c := range []struct{ key, end, wantKey, wantEnd string }{
		{"a", "", "/t/a", ""},      // one key
		{"", "\x00", "/t/", "/t0"}, // every key: up to the prefix's end, never past it
		{"/registry/", "/registry0", "/t//registry/", "/t//registry0"},
		{"z", "\x00", "/t/z", "/t0"},
		{"\xff\xff", "\xff\xff\xff", "/t/\xff\xff", "/t/\xff\xff\xff"}, // still inside /t/
	} {
		k, e := w.inward([]byte(c.key), []byte(c.end))
		if string(k) != c.wantKey || string(e) != c.wantEnd {
			t.Errorf("inward(%q, %q) = %q, %q; want %q, %q", c.key, c.end, k, e, c.wantKey, c.wantEnd)
		}
		if !strings.HasPrefix(string(k), "/t/") || (len(e) > 0 && string(e) > "/t0") {
			t.Errorf("inward(%q, %q) leaves the prefix: %q, %q", c.key, c.end, k, e)
		}
	}
}

func TestKeysComeBackWithoutThePrefixOrNotAtAll(t *testing.T) {
	w := newWatchServer(nil, "/t/")
	kv := &mvccpb.KeyValue{Key: []byte("/t/registry/a")}
	if !w.outward(kv) || string(kv.Key) != "registry/a" {
		t.Fatalf("%q", kv.Key)
	}
	if !w.outward(nil) {
		t.Fatal("an event without a previous value")
	}
	if w.outward(&mvccpb.KeyValue{Key: []byte("/u/registry/a")}) {
		t.Fatal("a key of another prefix passed")
	}
}

func TestWatchStreamsAreHeldToTheWatchLimitAndGivenBackWhenTheyEnd(t *testing.T) {
	g := newGate(zap.NewNop(), &fakeBook{owned: map[int64]bool{}}, testBudget(Limits{Watches: 2}))
	info := &grpc.StreamServerInfo{FullMethod: methodWatch}
	release := make(chan struct{})
	held := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() {
			held <- g.Stream(nil, &fakeWatchStream{}, info, func(any, grpc.ServerStream) error {
				<-release
				return nil
			})
		}()
	}
	for g.budget.streams.Load() != 2 {
		runtime.Gosched()
	}
	err := g.Stream(nil, &fakeWatchStream{}, info, func(any, grpc.ServerStream) error { return nil })
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "spec.limits.watches") {
		t.Fatalf("third stream: %v", err)
	}
	close(release)
	for i := 0; i < 2; i++ {
		if err := <-held; err != nil {
			t.Fatal(err)
		}
	}
	err = g.Stream(nil, &fakeWatchStream{}, info, func(any, grpc.ServerStream) error { return nil })
	if err != nil {
		t.Fatalf("the streams ended, room again: %v", err)
	}
	if n := g.budget.streams.Load(); n != 0 {
		t.Fatalf("%d streams still counted after every one ended", n)
	}
}

func TestStatusReportsTheCoresLowestVersionOnceKnown(t *testing.T) {
	b := testBudget(Limits{})
	b.core = newHeadroom(20, 0)
	s := &statusServer{budget: b}
	if _, err := s.Status(context.Background(), &pb.StatusRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("before any poll: %v", err)
	}
	b.core.record("core0", 1, 1, 0, "3.6.4", time.Now())
	b.core.record("core1", 1, 1, 0, "3.5.21", time.Now())
	b.core.record("core2", 1, 1, 0, "not a version", time.Now())
	resp, err := s.Status(context.Background(), &pb.StatusRequest{})
	if err != nil || resp.Version != "3.5.21" {
		t.Fatalf("%v %v", resp, err)
	}
	s.version = "3.5.0" // --report-version
	if resp, _ := s.Status(context.Background(), &pb.StatusRequest{}); resp.Version != "3.5.0" {
		t.Fatalf("%v", resp)
	}
}
