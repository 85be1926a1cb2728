package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/store"
)

// Delivery task: one event to one URL.
const (
	TypeDeliver = "webhook:deliver"
	// Queue is the default queue deliveries wait in, away from installs.
	Queue = "webhooks"
	// MaxRetry: backoff from 1 s doubling to 24 h, then daily: about
	// a week of trying.
	MaxRetry = 22
)

// Config is a process's webhook settings.
type Config struct {
	// Queue is the delivery queue (default Queue).
	Queue string
	// URL receives every event whose batch has no callback URL ("":
	// those are dropped, counted).
	URL string
	// Secrets sign each delivery, the current one first; a second one
	// (WIDGETQ_WEBHOOK_SECRET_PREVIOUS) adds its v1 while a secret rotates.
	Secrets []string
	// Hosts are where a batch's callback URL may point
	// (WIDGETQ_WEBHOOK_HOSTS; nil: nowhere but URL's host).
	Hosts *kommohost.List
	// Timeout bounds one delivery (default 10s).
	Timeout time.Duration
	// RelayEvery is how often an idle relay looks at the outbox (default
	// 250ms; it goes on at once while events wait).
	RelayEvery time.Duration
	// Transport carries deliveries (default: dialing only what Hosts
	// allows, and URL's host).
	Transport http.RoundTripper
	Logger    *slog.Logger
	// Count, when set, is told each delivery's outcome: delivered,
	// retrying, gone (410: stopped), failed (gave up), dropped (no URL).
	Count func(outcome string)
}

// Enabled reports whether events are signed and sent at all.
func (c Config) Enabled() bool { return len(c.Secrets) > 0 && c.Secrets[0] != "" }

// CheckCallback says whether a batch's callback URL may be used: https
// (http only to a host listed as local) on WIDGETQ_WEBHOOK_HOSTS.
func (c Config) CheckCallback(u string) error {
	if c.Hosts == nil {
		return errors.New("callback_url: no WIDGETQ_WEBHOOK_HOSTS is configured, so no callback URL is accepted")
	}
	if err := c.Hosts.Check(u); err != nil {
		return fmt.Errorf("callback_url: %w", err)
	}
	return nil
}

// QueueName is the delivery queue.
func (c Config) QueueName() string {
	if c.Queue == "" {
		return Queue
	}
	return c.Queue
}

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

func (c Config) count(o string) {
	if c.Count != nil {
		c.Count(o)
	}
}

// payload is a delivery task's: the event byte for byte, and its URL.
type payload struct {
	Event string    `json:"event"`
	URL   string    `json:"url"`
	At    time.Time `json:"at"`
}

// Outbox is what the relay needs of the store.
type Outbox interface {
	OutboxPeek(ctx context.Context, n int) ([]store.OutboxEntry, error)
	OutboxAck(ctx context.Context, es []store.OutboxEntry) error
}

// Relay moves events from the outbox into the delivery queue: each one a
// task whose ID is the event's, so several workers relaying at once, or a
// relay that died between enqueue and ack, queue none twice.
type Relay struct {
	Outbox Outbox
	Client *asynq.Client
	Config Config
}

// Once relays up to n events and reports how many it handled.
func (r *Relay) Once(ctx context.Context, n int) (int, error) {
	es, err := r.Outbox.OutboxPeek(ctx, n)
	if err != nil || len(es) == 0 {
		return 0, err
	}
	var done []store.OutboxEntry
	for _, e := range es {
		url := e.URL
		if url == "" {
			url = r.Config.URL
		}
		id := e.EventID()
		switch {
		case id == "" || e.Event == "":
			r.Config.logger().Error("webhook: an unreadable outbox entry was dropped")
			r.Config.count("dropped")
		case url == "":
			r.Config.count("dropped") // no WIDGETQ_WEBHOOK_URL and no callback URL
		default:
			b, _ := json.Marshal(payload{Event: e.Event, URL: url, At: e.At})
			_, err := r.Client.EnqueueContext(ctx, asynq.NewTask(TypeDeliver, b), asynq.TaskID("webhook:"+id), asynq.Queue(r.Config.QueueName()),
				asynq.MaxRetry(MaxRetry), asynq.Timeout(time.Minute), asynq.Retention(24*time.Hour))
			if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
				r.ack(ctx, done)
				return len(done), fmt.Errorf("webhook relay: %w", err)
			}
		}
		done = append(done, e)
	}
	return len(done), r.ack(ctx, done)
}

func (r *Relay) ack(ctx context.Context, es []store.OutboxEntry) error {
	if len(es) == 0 {
		return nil
	}
	return r.Outbox.OutboxAck(context.WithoutCancel(ctx), es)
}

// Loop relays until ctx ends: at once while events wait, else every
// interval.
func (r *Relay) Loop(ctx context.Context, interval time.Duration) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := r.Once(ctx, 200)
		if err != nil && ctx.Err() == nil {
			r.Config.logger().Warn("webhook relay", "error", err)
		}
		if n == 200 {
			t.Reset(0)
		} else {
			t.Reset(interval)
		}
	}
}

// Delay is a delivery's n-th retry delay: 1 s doubling, at most 24 h.
func Delay(n int) time.Duration {
	if n > 17 {
		return 24 * time.Hour
	}
	return min(time.Second<<n, 24*time.Hour)
}

// Deliverer sends delivery tasks.
type Deliverer struct {
	Config Config
	Now    func() time.Time
	// plain carries deliveries to the operator's own URL; guarded those
	// to a batch's callback URL, dialing only what Hosts allows (a listed
	// name resolving to a private address is refused: DNS rebinding).
	plain, guarded *http.Client
}

// NewDeliverer returns a deliverer for cfg.
func NewDeliverer(cfg Config) *Deliverer {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	client := func(guard bool) *http.Client {
		tr := cfg.Transport
		if tr == nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.Proxy = nil
			if guard && cfg.Hosts != nil {
				t.DialContext = cfg.Hosts.DialContext(&net.Dialer{Timeout: 10 * time.Second}, nil)
			}
			tr = t
		}
		return &http.Client{Transport: tr, Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &Deliverer{Config: cfg, plain: client(false), guarded: client(true)}
}

// Handle delivers one event: 2xx is delivered, 410 stops for good, any
// other answer or none is retried (Delay).
func (d *Deliverer) Handle(ctx context.Context, t *asynq.Task) error {
	var p payload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.Event == "" || p.URL == "" {
		d.Config.count("failed")
		return fmt.Errorf("webhook: not a delivery task: %w", asynq.SkipRetry)
	}
	hc := d.plain
	if p.URL != d.Config.URL {
		hc = d.guarded
		if err := d.Config.CheckCallback(p.URL); err != nil {
			d.Config.count("failed")
			d.Config.logger().Error("webhook: callback URL refused", "error", err)
			return fmt.Errorf("webhook: %w: %w", err, asynq.SkipRetry)
		}
	}
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	body := []byte(p.Event)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(body))
	if err != nil {
		d.Config.count("failed")
		return fmt.Errorf("webhook: %w: %w", err, asynq.SkipRetry)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "widgetq-webhooks/1")
	req.Header.Set(Header, Sign(d.Config.Secrets, now(), body))
	resp, err := hc.Do(req)
	log := d.Config.logger().With("url", RedactURL(p.URL), "event", eventID(body))
	if err != nil {
		d.retrying(ctx)
		log.Warn("webhook not delivered", "error", redactErr(err, p.URL))
		return fmt.Errorf("webhook: %s", redactErr(err, p.URL))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		d.Config.count("delivered")
		log.Debug("webhook delivered", "status", resp.StatusCode)
		return nil
	case resp.StatusCode == http.StatusGone:
		d.Config.count("gone")
		log.Warn("webhook receiver answered 410 Gone: this event is not sent again")
		return fmt.Errorf("webhook: 410 Gone: %w", asynq.SkipRetry)
	}
	d.retrying(ctx)
	log.Warn("webhook not delivered", "status", resp.StatusCode)
	return fmt.Errorf("webhook: receiver answered %d", resp.StatusCode)
}

// retrying counts a failed delivery: retried, or given up on the last.
func (d *Deliverer) retrying(ctx context.Context) {
	n, ok1 := asynq.GetRetryCount(ctx)
	m, ok2 := asynq.GetMaxRetry(ctx)
	if ok1 && ok2 && n >= m {
		d.Config.count("failed")
		return
	}
	d.Config.count("retrying")
}

func eventID(body []byte) string {
	var v struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &v)
	return v.ID
}

// RedactURL keeps a URL's scheme and host: a path or query may hold a
// receiver's secret token.
func RedactURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		if j := strings.IndexAny(rest, "/?#"); j >= 0 {
			rest = rest[:j]
		}
		return u[:i+3] + rest
	}
	return "(invalid URL)"
}

func redactErr(err error, u string) string {
	return strings.ReplaceAll(err.Error(), u, RedactURL(u))
}
