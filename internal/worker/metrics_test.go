package worker_test

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/widgetq/widgetq/internal/metrics"
	"github.com/widgetq/widgetq/internal/worker"
	"github.com/widgetq/widgetq/tasks"
)

// TestEveryTaskSeriesIsOnMetricsBeforeItsFirstEvent: a handler with
// metrics shows every (type, outcome, class) it can count, at zero, so an
// alert on failures has a series before the first failure.
func TestEveryTaskSeriesIsOnMetricsBeforeItsFirstEvent(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	worker.NewHandler(nil, nil, worker.Config{Metrics: m})
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	series := worker.TaskSeries()
	for _, s := range series {
		want := fmt.Sprintf(`widgetq_tasks_total{class=%q,outcome=%q,type=%q} 0`, s[2], s[1], s[0])
		if !strings.Contains(body, want) {
			t.Errorf("no %s", want)
		}
	}
	// The outcomes the README lists, for both task types, and the classes
	// an operator alerts on.
	for _, want := range [][3]string{
		{tasks.TypeInstallWidget, "installed", ""}, {tasks.TypeInstallWidget, "already_installed", ""},
		{tasks.TypeUninstallWidget, "uninstalled", ""}, {tasks.TypeInstallWidget, "deferred", ""},
		{tasks.TypeUninstallWidget, "rejected", "invalid"}, {tasks.TypeInstallWidget, "retrying", "rate_limited"},
		{tasks.TypeInstallWidget, "retrying", "internal"}, {tasks.TypeInstallWidget, "failed", "blocked"},
		{tasks.TypeUninstallWidget, "failed", "token_revoked"}, {tasks.TypeInstallWidget, "failed", "account_unknown"},
	} {
		found := false
		for _, s := range series {
			found = found || s == want
		}
		if !found {
			t.Errorf("TaskSeries lacks %v", want)
		}
	}
}
