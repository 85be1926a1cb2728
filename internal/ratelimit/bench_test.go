package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/ratelimit"
	"github.com/widgetq/widgetq/internal/redistest"
)

// BenchmarkReserve is the limiter's round trip: one script call per
// request to Kommo (REDIS_URL for a real server).
func BenchmarkReserve(b *testing.B) {
	r := redistest.New(b)
	prefix := redistest.Unique(b)
	redistest.Forget(b, r.Client, prefix)
	l, err := ratelimit.New(r.Client, ratelimit.Config{PerAccount: 1e6, Global: 1e6, Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var account int64
	b.ReportAllocs()
	cpu := r.ServerCPU(b)
	for b.Loop() {
		account++
		if _, err := l.Reserve(ctx, ratelimit.Of(int64(account%1000)), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	r.ReportServerCPU(b, cpu)
}
