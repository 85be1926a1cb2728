// Package webhook tells backends what happened, signed: the events
// (install.succeeded, install.failed, uninstall.succeeded,
// uninstall.failed, batch.completed), their signature header, and their
// delivery — each event its own asynq task in the webhooks queue, fed from
// the outbox the result scripts write in the same step as the result.
//
// The signature is Stripe's scheme: Widgetq-Signature: t=<unix
// seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>, with one v1 per
// secret while a previous secret is still set (rotation).
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header is the signature header's name.
const Header = "Widgetq-Signature"

// Event types.
const (
	InstallSucceeded   = "install.succeeded"
	InstallFailed      = "install.failed"
	UninstallSucceeded = "uninstall.succeeded"
	UninstallFailed    = "uninstall.failed"
	BatchCompleted     = "batch.completed"
)

// Event is what is delivered. Data never holds a token, a pass or users_lp
// value: results hold none.
type Event struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	CreatedAt string `json:"created_at"`
	Data      any    `json:"data"`
}

// TaskData is an install or uninstall event's data.
type TaskData struct {
	AccountID   int64  `json:"account_id"`
	WidgetCode  string `json:"widget_code"`
	Integration string `json:"integration"`
	Status      string `json:"status"`
	Class       string `json:"class,omitempty"`
	Detail      string `json:"detail,omitempty"`
	BatchID     string `json:"batch_id,omitempty"`
}

// TaskEvent is the event of a task's final result: its ID is stable for
// the enqueueing and outcome, so a receiver can drop a repeat (delivery is
// at least once).
func TaskEvent(op, enqueueID string, succeeded bool, d TaskData, at time.Time) []byte {
	typ := op + ".failed"
	if succeeded {
		typ = op + ".succeeded"
	}
	id := "evt_" + enqueueID + "_" + d.Status
	b, _ := json.Marshal(Event{ID: id, Type: typ, CreatedAt: at.UTC().Format(time.RFC3339), Data: d})
	return b
}

// Sign is the header value for body at t, one v1 per secret (the current
// one first).
func Sign(secrets []string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	parts := []string{"t=" + ts}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		parts = append(parts, "v1="+hex.EncodeToString(mac(s, ts, body)))
	}
	return strings.Join(parts, ",")
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrNoSignature = errors.New("webhook: no valid t= and v1= in the signature header")
	ErrStale       = errors.New("webhook: timestamp outside the tolerance (a replay?)")
	ErrMismatch    = errors.New("webhook: no signature matches")
)

// Verify checks a delivery as a receiver should: a v1 that matches the
// secret over "<t>.<raw body>" (constant time), and t within tolerance of
// now, against replays.
func Verify(header string, body []byte, secret string, tolerance time.Duration, now time.Time) error {
	var ts string
	var sigs [][]byte
	for _, p := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrNoSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: %s off", ErrStale, d.Round(time.Second))
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrMismatch
}
