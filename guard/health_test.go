package main

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestReadinessIsLoggedWhenItsCauseChangesOnly(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	r := &readiness{lg: zap.New(core)}
	answers := []struct{ cause, why string }{
		{"usage", "reading the tenant's usage and the core's size"},
		{"usage", "reading the tenant's usage and the core's size"}, // the next probe: nothing new
		{"", ""},
		{"", ""},
		{"core", "core etcd not reachable: context deadline exceeded"},
		{"core", "core etcd not reachable: connection refused"}, // same cause, other words: not again
		{"", ""},
	}
	for _, a := range answers {
		r.answer(a.cause, a.why)
	}
	var got []string
	for _, e := range logs.All() {
		line := e.Message
		if reason, ok := e.ContextMap()["reason"]; ok {
			line += ": " + reason.(string)
		}
		got = append(got, line)
	}
	want := []string{
		"not ready: reading the tenant's usage and the core's size",
		"ready",
		"not ready: core etcd not reachable: context deadline exceeded",
		"ready",
	}
	if len(got) != len(want) {
		t.Fatalf("logged %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("logged %q, want %q", got, want)
		}
	}
	if logs.All()[2].Level != zapcore.WarnLevel {
		t.Errorf("not ready is logged at %v, want warn", logs.All()[2].Level)
	}
}

func TestAGuardReadyAtOnceSaysSoOnce(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	r := &readiness{lg: zap.New(core)}
	r.answer("", "")
	r.answer("", "")
	if n := logs.Len(); n != 1 || logs.All()[0].Message != "ready" {
		t.Fatalf("logged %v, want one \"ready\"", logs.All())
	}
}
