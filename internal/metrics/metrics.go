// Package metrics is what a widgetq worker tells Prometheus: tasks by
// type, outcome and error class; Kommo requests by route and status, with
// their durations; limiter deferrals; 429s; token refreshes; blocked
// accounts; queue sizes and latency. Labels hold route templates, classes
// and queue names — never an account's data or a secret.
package metrics

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds a worker's collectors. A nil *Metrics records nothing.
type Metrics struct {
	Registry    *prometheus.Registry
	tasks       *prometheus.CounterVec
	requests    *prometheus.HistogramVec
	deferrals   prometheus.Counter
	missedSlots prometheus.Counter
	rateLimited prometheus.Counter
	refreshes   *prometheus.CounterVec
	pauses      prometheus.Counter
	integTasks  *prometheus.CounterVec
	webhooks    *prometheus.CounterVec

	mu         sync.Mutex
	queues     map[[2]string]float64 // (queue, state) → size
	latency    map[string]float64
	blocked    float64
	paused     float64
	webhookAge float64
	scraped    time.Time
}

// New returns collectors registered on a fresh registry, with Go's and
// the process's own.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "widgetq_tasks_total",
			Help: "Task runs by type, outcome (installed, already_installed, uninstalled, retrying, failed, deferred, rejected) and error class."},
			[]string{"type", "outcome", "class"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "widgetq_kommo_request_duration_seconds",
			Help:    "Requests to Kommo by route template and HTTP status (\"error\": no answer).",
			Buckets: []float64{.01, .025, .05, .1, .2, .4, .8, 1.6, 3.2, 6.4, 12.8, 30}},
			[]string{"route", "status"}),
		deferrals: prometheus.NewCounter(prometheus.CounterOpts{Name: "widgetq_limiter_deferrals_total",
			Help: "Tasks sent back to the queue because the rate budget was further away than the in-process wait."}),
		missedSlots: prometheus.NewCounter(prometheus.CounterOpts{Name: "widgetq_limiter_missed_slots_total",
			Help: "Rate slots a request was too late to use (over ratelimit.MaxLate after them): it reserved another."}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{Name: "widgetq_kommo_rate_limited_total",
			Help: "429 answers from Kommo."}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "widgetq_token_refreshes_total",
			Help: "Token requests to Kommo by result (ok, error)."}, []string{"result"}),
		pauses: prometheus.NewCounter(prometheus.CounterOpts{Name: "widgetq_kommo_pauses_total",
			Help: "Times this worker paused all Kommo traffic: HTML 403 blocks from several accounts at once (an IP block)."}),
		integTasks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "widgetq_integration_tasks_total",
			Help: "Task runs by OAuth integration and outcome (as widgetq_tasks_total's)."}, []string{"integration", "outcome"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "widgetq_webhook_deliveries_total",
			Help: "Webhook delivery attempts by outcome: delivered, retrying, gone (410: stopped), failed (gave up), dropped (no URL)."}, []string{"outcome"}),
		queues: map[[2]string]float64{}, latency: map[string]float64{},
	}
	m.Registry.MustRegister(m.tasks, m.requests, m.deferrals, m.missedSlots, m.rateLimited, m.refreshes, m.pauses, m.integTasks, m.webhooks, (*stateCollector)(m),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Every known label value is there from the first scrape, at zero:
	// alerts and dashboards see a series before its first event.
	for _, r := range []string{"ok", "error"} {
		m.refreshes.WithLabelValues(r)
	}
	for _, o := range []string{"delivered", "retrying", "gone", "failed", "dropped"} {
		m.webhooks.WithLabelValues(o)
	}
	return m
}

// DeclareTask makes the series of one (type, outcome, class) of
// widgetq_tasks_total exist at zero, before its first event.
func (m *Metrics) DeclareTask(typ, outcome, class string) {
	if m == nil {
		return
	}
	m.tasks.WithLabelValues(typ, outcome, class)
}

// Task counts one run's outcome.
func (m *Metrics) Task(typ, outcome, class string) {
	if m == nil {
		return
	}
	m.tasks.WithLabelValues(typ, outcome, class).Inc()
}

// IntegrationTask counts one run's outcome under its integration's name
// (never an account: the label set stays as small as the registry).
func (m *Metrics) IntegrationTask(integration, outcome string) {
	if m == nil {
		return
	}
	m.integTasks.WithLabelValues(integration, outcome).Inc()
}

// Webhook counts a webhook delivery attempt's outcome.
func (m *Metrics) Webhook(outcome string) {
	if m == nil {
		return
	}
	m.webhooks.WithLabelValues(outcome).Inc()
}

// KommoPaused counts a pause of all Kommo traffic this worker started.
func (m *Metrics) KommoPaused() {
	if m == nil {
		return
	}
	m.pauses.Inc()
}

// Deferred counts a task sent back for rate budget.
func (m *Metrics) Deferred() {
	if m == nil {
		return
	}
	m.deferrals.Inc()
}

// MissedSlot counts a rate slot a request was too late to use.
func (m *Metrics) MissedSlot() {
	if m == nil {
		return
	}
	m.missedSlots.Inc()
}

// Request records one request to Kommo; status 0 means no answer.
func (m *Metrics) Request(method, path string, status int, d time.Duration) {
	if m == nil {
		return
	}
	route := Route(method, path)
	st := "error"
	if status > 0 {
		st = strconv.Itoa(status)
	}
	m.requests.WithLabelValues(route, st).Observe(d.Seconds())
	if status == 429 {
		m.rateLimited.Inc()
	}
	if route == "POST /oauth2/access_token" {
		if status == 200 {
			m.refreshes.WithLabelValues("ok").Inc()
		} else {
			m.refreshes.WithLabelValues("error").Inc()
		}
	}
}

// Route is the template of a Kommo request's path: widget codes and IDs
// become placeholders, so a label never carries data.
func Route(method, path string) string {
	// A base URL may carry a path of its own (a proxy, the sandbox).
	for _, mark := range []string{"/api/v4/", "/oauth2/"} {
		if i := strings.Index(path, mark); i > 0 {
			path = path[i:]
			break
		}
	}
	switch {
	case path == "/oauth2/access_token":
	case path == "/api/v4/account", path == "/api/v4/widgets":
	case strings.HasPrefix(path, "/api/v4/widgets/"):
		path = "/api/v4/widgets/{code}"
	default:
		path = "other"
	}
	return method + " " + path
}

// stateCollector reports the state read by Refresh: queue sizes and
// latency, blocked accounts. A scrape never touches Redis.
type stateCollector Metrics

// queueStates are the states widgetq_queue_tasks reports per queue.
var queueStates = []string{"pending", "active", "scheduled", "retry", "archived", "completed"}

var (
	queueSizeDesc    = prometheus.NewDesc("widgetq_queue_tasks", "Tasks in a queue by state (pending, active, scheduled, retry, archived, completed).", []string{"queue", "state"}, nil)
	queueLatencyDesc = prometheus.NewDesc("widgetq_queue_latency_seconds", "Age of the oldest pending task of a queue.", []string{"queue"}, nil)
	blockedDesc      = prometheus.NewDesc("widgetq_blocked_accounts", "Accounts marked blocked by Kommo.", nil, nil)
	pausedDesc       = prometheus.NewDesc("widgetq_kommo_paused_seconds", "How long all Kommo traffic stays paused (an IP block suspected); 0: not paused.", nil, nil)
	webhookAgeDesc   = prometheus.NewDesc("widgetq_webhook_oldest_undelivered_seconds", "Age of the oldest webhook event not yet delivered (in the outbox, or waiting in the webhooks queue); 0: none.", nil, nil)
	scrapeAgeDesc    = prometheus.NewDesc("widgetq_state_age_seconds", "Age of the queue and block figures (read from Redis in the background).", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueSizeDesc
	ch <- queueLatencyDesc
	ch <- blockedDesc
	ch <- pausedDesc
	ch <- webhookAgeDesc
	ch <- scrapeAgeDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.scraped.IsZero() {
		return
	}
	for k, v := range c.queues {
		ch <- prometheus.MustNewConstMetric(queueSizeDesc, prometheus.GaugeValue, v, k[0], k[1])
	}
	for q, v := range c.latency {
		ch <- prometheus.MustNewConstMetric(queueLatencyDesc, prometheus.GaugeValue, v, q)
	}
	ch <- prometheus.MustNewConstMetric(blockedDesc, prometheus.GaugeValue, c.blocked)
	ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, c.paused)
	ch <- prometheus.MustNewConstMetric(webhookAgeDesc, prometheus.GaugeValue, c.webhookAge)
	ch <- prometheus.MustNewConstMetric(scrapeAgeDesc, prometheus.GaugeValue, time.Since(c.scraped).Seconds())
}

// State is what Refresh reads from widgetq's own keys.
type State struct {
	// Blocked is how many accounts are marked blocked.
	Blocked int
	// KommoPausedFor is how long all Kommo traffic stays paused.
	KommoPausedFor time.Duration
	// WebhookOldest is the age of the oldest undelivered webhook event.
	WebhookOldest time.Duration
}

// Refresh reads the queues' state, and widgetq's through state, now.
func (m *Metrics) Refresh(insp *asynq.Inspector, queues []string, state func() (State, error)) error {
	qs := map[[2]string]float64{}
	lat := map[string]float64{}
	existing, err := insp.Queues()
	if err != nil {
		existing = queues // unknown: ask each, report what answers
	}
	for _, q := range queues {
		if !slices.Contains(existing, q) {
			// Not created yet (no task ever enqueued): empty, and said so.
			for _, state := range queueStates {
				qs[[2]string{q, state}] = 0
			}
			lat[q] = 0
			continue
		}
		qi, err := insp.GetQueueInfo(q)
		if err != nil {
			continue
		}
		for state, n := range map[string]int{"pending": qi.Pending, "active": qi.Active, "scheduled": qi.Scheduled, "retry": qi.Retry, "archived": qi.Archived, "completed": qi.Completed} {
			qs[[2]string{q, state}] = float64(n)
		}
		lat[q] = qi.Latency.Seconds()
	}
	st, err := state()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.queues, m.latency, m.scraped = qs, lat, time.Now()
	if err == nil {
		m.blocked, m.paused, m.webhookAge = float64(st.Blocked), st.KommoPausedFor.Seconds(), st.WebhookOldest.Seconds()
	}
	return err
}

// RefreshLoop refreshes every interval until ctx ends.
func (m *Metrics) RefreshLoop(ctx context.Context, every time.Duration, insp *asynq.Inspector, queues []string, state func() (State, error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		_ = m.Refresh(insp, queues, state)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
