package store

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/widgetq/widgetq/internal/redistest"
)

// workerResult is a result as the worker records a success.
func workerResult() *Result {
	t := time.Date(2026, 12, 4, 12, 0, 0, 123456789, time.UTC)
	return &Result{AccountID: 31999001, WidgetCode: "amo_asterisk", Integration: "acme", BatchID: "b_0123", SettingsDigest: map[string]string{"login": "9f2c", "domain": "01ab"},
		Operation: "install", Status: StatusInstalled, TaskID: "install:31999001:amo_asterisk", Queue: "widgets", EnqueueID: "e-42", WidgetID: 101, WidgetVersion: "1.0.3",
		Attempts: 1, CreatedAt: t, QueuedAt: t, UpdatedAt: t.Add(time.Second), FinishedAt: t.Add(time.Second)}
}

// TestResultEncodesAsJSONMarshalDoes: the worker's results take the
// writer without reflection, and come out as json.Marshal's bytes; a
// result it cannot write (an error, a quote, a time not in UTC) still
// encodes, through json.Marshal.
func TestResultEncodesAsJSONMarshalDoes(t *testing.T) {
	t.Parallel()
	plain := workerResult()
	withErr := workerResult()
	withErr.LastError = &ErrorInfo{Class: "server", Detail: "boom"}
	quoted := workerResult()
	quoted.WidgetVersion = `1.0 "beta" <b>`
	local := workerResult()
	local.CreatedAt = local.CreatedAt.In(time.FixedZone("X", 3600))
	empty := &Result{}
	for _, c := range []struct {
		name string
		r    *Result
		fast bool
	}{{"a success", plain, true}, {"nothing set", empty, true}, {"an error", withErr, false}, {"a quote", quoted, false}, {"a zone", local, false}} {
		want, _ := json.Marshal(c.r)
		_, fast := appendResult(nil, c.r)
		got, err := encodeResult(c.r)
		if err != nil || string(got) != string(want) || fast != c.fast {
			t.Errorf("%s: encodeResult = %s (%v), fast %v; json.Marshal = %s, want fast %v", c.name, got, err, fast, want, c.fast)
		}
	}
}

// TestTheWorkersResultsTakeTheWriter: a result made as the worker makes it
// (from the state Begin read of a queued mark, finished now in UTC) is
// written without json.Marshal — the times the store reads back are UTC.
func TestTheWorkersResultsTakeTheWriter(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	ctx := context.Background()
	s := New(r.Client, redistest.Unique(t))
	if _, err := s.MarkQueued(ctx, Queued{Op: "install", Queue: "q", AccountID: 1, Code: "w", TaskID: "t1", EnqueueID: "e1"}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Begin(ctx, 1, "", "w", true)
	if err != nil || st.Result == nil {
		t.Fatalf("begin: %+v, %v", st, err)
	}
	res := &Result{AccountID: 1, WidgetCode: "w", Operation: "install", Status: StatusInstalled, EnqueueID: "e1", TaskID: "t1", Queue: "q",
		QueuedAt: st.Result.QueuedAt, CreatedAt: st.Result.CreatedAt, UpdatedAt: time.Now().UTC(), FinishedAt: time.Now().UTC(), Attempts: 1}
	if _, ok := appendResult(nil, res); !ok {
		t.Fatalf("the worker's result goes through json.Marshal: %+v (queued_at in %v, created_at in %v)", res, res.QueuedAt.Location(), res.CreatedAt.Location())
	}
}

// FuzzEncodeResult: encodeResult writes what json.Marshal writes.
func FuzzEncodeResult(f *testing.F) {
	r := workerResult()
	f.Add(r.AccountID, r.WidgetCode, r.Integration, r.BatchID, "login", "9f2c", r.Operation, string(r.Status), r.TaskID, r.EnqueueID, r.WidgetVersion, r.WidgetID, r.Attempts,
		r.CreatedAt.UnixNano(), int64(0), false)
	f.Add(int64(-1), "", "", "", "", "", "", "", "", "", "", 0, 0, int64(0), int64(-62135596800000000), true)
	f.Add(int64(7), "w<>", "a&b", "b\u2028", "k\"", "v\\", "op\x7f", "é", "\x00", "\xff", "", -5, 3, int64(253402300800000000), int64(1), false)
	f.Fuzz(func(t *testing.T, account int64, code, integ, batch, dk, dv, op, status, task, eid, version string, widgetID, attempts int, created, finished int64, withErr bool) {
		r := &Result{AccountID: account, WidgetCode: code, Integration: integ, BatchID: batch, Operation: op, Status: Status(status), TaskID: task, EnqueueID: eid,
			WidgetVersion: version, WidgetID: widgetID, Attempts: attempts, CreatedAt: time.Unix(0, created).UTC(), UpdatedAt: time.Unix(0, created/2).UTC(),
			FinishedAt: time.Unix(0, finished).UTC(), QueuedAt: time.Unix(0, finished/3)}
		if dk != "" {
			r.SettingsDigest = map[string]string{dk: dv, dv: dk}
		}
		if withErr {
			r.LastError = &ErrorInfo{Class: code, Detail: version}
		}
		want, werr := json.Marshal(r)
		got, err := encodeResult(r)
		if (werr == nil) != (err == nil) || string(got) != string(want) {
			t.Fatalf("encodeResult = %s (%v); json.Marshal = %s (%v)", got, err, want, werr)
		}
	})
}

// BenchmarkEncodeResult: a worker's success, without reflection and with
// json.Marshal (what the record did).
func BenchmarkEncodeResult(b *testing.B) {
	r := workerResult()
	b.Run("writer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeResult(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
