package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/widgetq/widgetq/internal/redistest"
)

func TestRouteKeepsNoData(t *testing.T) {
	for _, c := range []struct{ method, path, want string }{
		{"POST", "/api/v4/widgets/amo_secret_code", "POST /api/v4/widgets/{code}"},
		{"GET", "/k/acme/api/v4/widgets/x", "GET /api/v4/widgets/{code}"},
		{"GET", "/api/v4/widgets", "GET /api/v4/widgets"},
		{"POST", "/k/acme/oauth2/access_token", "POST /oauth2/access_token"},
		{"GET", "/api/v4/leads/123", "GET other"},
	} {
		if got := Route(c.method, c.path); got != c.want {
			t.Errorf("Route(%s %s) = %q, want %q", c.method, c.path, got, c.want)
		}
	}
}

func TestExposition(t *testing.T) {
	var none *Metrics
	none.Task("t", "installed", "") // a nil Metrics records nothing, and does not panic
	none.Request("GET", "/", 200, time.Second)

	m := New()
	m.Task("widget:install", "installed", "")
	m.Task("widget:install", "failed", "server")
	m.Deferred()
	m.MissedSlot()
	m.MissedSlot()
	m.Request("POST", "/k/a/api/v4/widgets/w", 429, 30*time.Millisecond)
	m.Request("POST", "/k/a/oauth2/access_token", 200, 10*time.Millisecond)
	m.Request("GET", "/k/a/api/v4/widgets/w", 0, time.Second)
	m.mu.Lock()
	m.queues[[2]string{"widgets", "pending"}] = 7
	m.latency["widgets"] = 1.5
	m.blocked = 2
	m.scraped = time.Now()
	m.mu.Unlock()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`widgetq_tasks_total{class="",outcome="installed",type="widget:install"} 1`,
		`widgetq_tasks_total{class="server",outcome="failed",type="widget:install"} 1`,
		`widgetq_limiter_deferrals_total 1`,
		`widgetq_limiter_missed_slots_total 2`,
		`widgetq_kommo_rate_limited_total 1`,
		`widgetq_token_refreshes_total{result="ok"} 1`,
		`widgetq_kommo_request_duration_seconds_count{route="POST /api/v4/widgets/{code}",status="429"} 1`,
		`widgetq_kommo_request_duration_seconds_count{route="GET /api/v4/widgets/{code}",status="error"} 1`,
		`widgetq_queue_tasks{queue="widgets",state="pending"} 7`,
		`widgetq_queue_latency_seconds{queue="widgets"} 1.5`,
		`widgetq_blocked_accounts 2`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in\n%s", want, body)
		}
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func TestKnownSeriesStartAtZero(t *testing.T) {
	m := New()
	m.DeclareTask("widget:install", "retrying", "server")
	body := scrape(t, m)
	for _, want := range []string{
		`widgetq_tasks_total{class="server",outcome="retrying",type="widget:install"} 0`,
		`widgetq_token_refreshes_total{result="ok"} 0`,
		`widgetq_token_refreshes_total{result="error"} 0`,
		`widgetq_limiter_deferrals_total 0`,
		`widgetq_limiter_missed_slots_total 0`,
		`widgetq_kommo_rate_limited_total 0`,
		`widgetq_kommo_pauses_total 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s before any event in\n%s", want, body)
		}
	}
	var none *Metrics
	none.DeclareTask("t", "o", "c") // a nil Metrics declares nothing, and does not panic
}

func TestQueuesNotCreatedYetAreEmpty(t *testing.T) {
	r := redistest.New(t)
	q := redistest.Unique(t)
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	m := New()
	if err := m.Refresh(insp, []string{q}, func() (State, error) { return State{KommoPausedFor: 90 * time.Second}, nil }); err != nil {
		t.Fatal(err)
	}
	body := scrape(t, m)
	for _, want := range []string{
		`widgetq_queue_tasks{queue="` + q + `",state="pending"} 0`,
		`widgetq_queue_tasks{queue="` + q + `",state="archived"} 0`,
		`widgetq_queue_latency_seconds{queue="` + q + `"} 0`,
		`widgetq_blocked_accounts 0`,
		`widgetq_kommo_paused_seconds 90`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s for a queue with no task yet in\n%s", want, body)
		}
	}
	// Once it has a task, its figures are read.
	c := asynq.NewClientFromRedisClient(r.Client)
	t.Cleanup(func() { _ = insp.DeleteQueue(q, true) })
	if _, err := c.Enqueue(asynq.NewTask("t", nil), asynq.Queue(q)); err != nil {
		t.Fatal(err)
	}
	if err := m.Refresh(insp, []string{q}, func() (State, error) { return State{KommoPausedFor: 90 * time.Second}, nil }); err != nil {
		t.Fatal(err)
	}
	if body := scrape(t, m); !strings.Contains(body, `widgetq_queue_tasks{queue="`+q+`",state="pending"} 1`) {
		t.Errorf("no pending task in\n%s", body)
	}
}
