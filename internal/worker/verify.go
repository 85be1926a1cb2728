package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/retry"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/tasks"
)

// Drift classes: `enqueue verify` found a recorded install no longer
// standing in Kommo.
const (
	// ClassDriftUninstalled: the widget is no longer active in the
	// account (a user uninstalled it).
	ClassDriftUninstalled = "drift_uninstalled"
	// ClassDriftSettings: the widget's non-secret settings differ from
	// those installed (a user changed them); the detail names the keys.
	ClassDriftSettings = "drift_settings"
)

// driftOf compares what Kommo says of a widget with the recorded install:
// the drift class and the keys that changed ("" : none). Pure.
func driftOf(active bool, installed map[string]string, current map[string]string) (string, []string) {
	if !active {
		return ClassDriftUninstalled, nil
	}
	var changed []string
	for k, d := range installed {
		if current[k] != d {
			changed = append(changed, k)
		}
	}
	sort.Strings(changed)
	if len(changed) > 0 {
		return ClassDriftSettings, changed
	}
	return "", nil
}

// HandleVerify checks one recorded install (tasks.TypeVerifyWidget): the
// widget still active, its non-secret settings as installed. Drift is
// recorded as a failed result whose class says which (a replay installs
// again while asynq still keeps the install task); an install still
// standing gets verified_at. Nothing is recorded when the result changed
// since the check was queued, or when the account cannot be asked
// (blocked, no credentials): a check never turns an install into a
// failure it did not see.
func (h *Handler) HandleVerify(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.DecodeVerifyWidget(t.Payload())
	if err != nil {
		return h.badPayload(ctx, t, err)
	}
	a, err := h.begin(ctx, "verify", p.AccountID, p.Integration, p.WidgetCode, p.EnqueueID)
	if err != nil {
		return err
	}
	log := h.cfg.Logger.With("op", "verify", "account", p.AccountID, "widget", p.WidgetCode, "integration", a.integ)
	if a.prepErr != nil {
		log.Warn("install not verified", "error", a.prepErr)
		return fmt.Errorf("%w: %w", a.prepErr, asynq.SkipRetry)
	}
	prev := a.prev
	if prev == nil || prev.EnqueueID != p.EnqueueID || (prev.Status != store.StatusInstalled && prev.Status != store.StatusAlreadyInstalled) {
		log.Debug("the result changed since the check was queued: nothing to verify")
		return nil
	}
	acct, err := h.account(ctx, a)
	var de *retry.DeferError
	switch {
	case errors.As(err, &de):
		return de
	case err != nil:
		log.Warn("install not verified: the account cannot be asked", "error", err)
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	c, err := h.client(ctx, a, acct)
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	w, _, err := c.GetWidget(ctx, p.WidgetCode)
	if err != nil {
		if retryable(err) {
			return err
		}
		log.Warn("install not verified", "class", classOf(err), "error", errorInfo(err).Detail)
		return fmt.Errorf("%s: %w", classOf(err), asynq.SkipRetry)
	}
	current := map[string]string{}
	for k := range prev.SettingsDigest {
		if v, ok := w.Settings[k]; ok {
			current[k] = kommo.DigestValue(v)
		}
	}
	class, changed := driftOf(bool(w.IsActiveInAccount), prev.SettingsDigest, current)
	r := *prev
	now := time.Now().UTC()
	if class == "" {
		r.VerifiedAt = now
		h.cfg.Metrics.IntegrationTask(a.integ, "verified")
		log.Debug("install verified")
		return h.st.Record(ctx, &r)
	}
	detail := fmt.Sprintf("Kommo says widget %s is no longer active in account %d (uninstalled in Kommo?); `enqueue replay --class %s` installs it again while asynq keeps the install task (24 h), else enqueue it from its source",
		p.WidgetCode, p.AccountID, class)
	if class == ClassDriftSettings {
		detail = fmt.Sprintf("the settings of widget %s in account %d changed in Kommo since they were installed (keys: %s); `enqueue replay --class %s` installs them again while asynq keeps the install task (24 h)",
			p.WidgetCode, p.AccountID, strings.Join(changed, ", "), class)
	}
	r.Status, r.FinishedAt = store.StatusFailed, now
	r.LastError = &store.ErrorInfo{Class: class, Detail: detail, At: now}
	h.cfg.Metrics.IntegrationTask(a.integ, "drift")
	log.LogAttrs(ctx, slog.LevelWarn, "drift", slog.String("class", class), slog.String("keys", strings.Join(changed, ",")))
	return h.st.Record(ctx, &r)
}
