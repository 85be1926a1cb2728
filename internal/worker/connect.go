package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/seal"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

// HandleConnect finishes an account's OAuth install (tasks.TypeConnectAccount):
// it exchanges the code at the account's host with the integration's own
// client, finds the account's ID (GET /api/v4/account; the token's
// account_id claim if that call keeps failing — the code is spent by then),
// stores the credentials for the integration, and queues the installs of
// its install-on-connect widgets. Requests are paced in the integration's
// budget like any other; the code's exchange is never repeated once sent.
func (h *Handler) HandleConnect(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.DecodeConnectAccount(t.Payload())
	if err != nil {
		return h.badPayload(ctx, t, err)
	}
	log := h.cfg.Logger.With("op", "connect", "integration", p.Integration, "base_url", p.BaseURL, "task_id", attemptOf(ctx).TaskID)
	fail := func(class, detail string) error {
		h.cfg.Metrics.IntegrationTask(p.Integration, "connect_failed")
		log.Error("account not connected", "class", class, "detail", detail)
		return fmt.Errorf("%s: %s: %w", class, detail, asynq.SkipRetry)
	}
	code := p.Code
	if p.SealedCode != "" {
		plain, err := h.st.Keys().Open(p.SealedCode)
		switch {
		case errors.Is(err, seal.ErrCorrupt):
			return fail(string(kommo.ClassInvalid), "sealed_code: "+err.Error())
		case err != nil:
			return fmt.Errorf("%s: sealed_code: %w", ClassInternal, err)
		}
		code = plain
	}
	_, oauth, err := h.integs.resolve(ctx, p.Integration, "")
	var ie *internalErr
	if errors.As(err, &ie) {
		return fmt.Errorf("%s: %w", ClassInternal, err)
	}
	if err != nil || oauth == nil || oauth.ClientID == "" {
		return fail(ClassIntegrationUnknown, fmt.Sprintf("integration %q has no OAuth client here (register it, or set KOMMO_CLIENT_ID for the default)", p.Integration))
	}
	if err := h.cfg.Hosts.Check(p.BaseURL); err != nil {
		return fail(ClassHostNotAllowed, "base_url: "+err.Error())
	}
	a := &attempt{op: "connect", integ: p.Integration, maxRetry: 1}
	hc := h.kommoHTTP(a, h.cfg.RequestTimeout)
	oa := *oauth
	oa.HTTPClient, oa.Timeout = hc, h.cfg.RequestTimeout
	tok, err := oa.Exchange(ctx, p.BaseURL, code)
	if err != nil {
		a.mu.Lock()
		sent := a.sentChange
		a.mu.Unlock()
		if sent || !kommo.IsRetryable(err) {
			// Once sent, the code may be spent: trying it again would only
			// be refused. The user installs the integration again.
			return fail(classOf(err), "exchange the code: "+errorInfo(err).Detail)
		}
		return err // not sent (rate budget, a dial error): retried within the code's life
	}
	id := h.accountID(ctx, log, p.BaseURL, hc, tok)
	if id <= 0 {
		return fail(string(kommo.ClassServer), "the code was exchanged but the account's ID could not be read (GET /api/v4/account failed and the token has no account_id); the user must install again")
	}
	acct := store.Account{ID: id, Integration: p.Integration, BaseURL: p.BaseURL, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.Expiry}
	var putErr error
	for try := range 5 {
		if putErr = h.st.PutAccount(context.WithoutCancel(ctx), acct); putErr == nil {
			break
		}
		time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
	}
	if putErr != nil {
		return fail(ClassInternal, fmt.Sprintf("account %d: store the credentials: %v", id, putErr))
	}
	queued := h.installOnConnect(ctx, log, p.Integration, id, attemptOf(ctx).Queue)
	h.cfg.Metrics.IntegrationTask(p.Integration, "connected")
	log.Info("account connected", "account", id, "installs_queued", queued)
	return nil
}

// accountID asks the account for its ID, a few times; the token's claim is
// the fallback (the pair is in hand, and the code cannot be used again).
func (h *Handler) accountID(ctx context.Context, log *slog.Logger, base string, hc *http.Client, tok *kommo.Token) int64 {
	c, err := kommo.NewClient(base, kommo.WithHTTPClient(hc), kommo.WithAuth(kommo.StaticToken(tok.AccessToken)),
		kommo.WithTimeout(h.cfg.RequestTimeout), kommo.WithUserAgent(h.cfg.UserAgent), kommo.WithSecrets(tok.AccessToken, tok.RefreshToken))
	if err == nil {
		for try := range 3 {
			acct, _, gerr := c.GetAccount(ctx)
			if gerr == nil && acct.ID > 0 {
				return int64(acct.ID)
			}
			err = gerr
			if gerr != nil && !kommo.IsRetryable(gerr) {
				break
			}
			time.Sleep(time.Duration(try+1) * 500 * time.Millisecond)
		}
	}
	if cl, ok := kommo.ParseClaims(tok.AccessToken); ok && cl.AccountID > 0 {
		log.Warn("GET /api/v4/account failed after the code's exchange: using the token's account_id", "error", err)
		return cl.AccountID
	}
	return 0
}

// installOnConnect queues the integration's install-on-connect widgets for
// the account, on queue; it returns how many it queued.
func (h *Handler) installOnConnect(ctx context.Context, log *slog.Logger, name string, account int64, queue string) int {
	i, err := h.st.Integration(ctx, name)
	if err != nil || len(i.InstallOnConnect) == 0 {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			log.Error("could not read the install-on-connect settings: nothing queued", "account", account, "error", err)
		}
		return 0
	}
	if h.cfg.Producer == nil {
		log.Warn("no producer configured: install-on-connect widgets not queued", "account", account)
		return 0
	}
	var ps []tasks.InstallWidgetPayload
	for _, code := range slices.Sorted(maps.Keys(i.InstallOnConnect)) {
		pl := tasks.InstallWidgetPayload{AccountID: account, WidgetCode: code, Settings: i.InstallOnConnect[code], Integration: name}
		if keys := h.st.Keys(); keys.Enabled() {
			// The settings hold passwords: sealed in the queue as a
			// producer with the key seals them.
			var buf bytes.Buffer
			if json.Compact(&buf, pl.Settings) == nil {
				pl.SealedSettings, pl.Settings = keys.Seal(buf.String()), nil
			}
		}
		ps = append(ps, pl)
	}
	var opts []asynq.Option
	if queue != "" {
		opts = append(opts, asynq.Queue(queue))
	}
	n := 0
	for k, r := range h.cfg.Producer.InstallMany(context.WithoutCancel(ctx), ps, producer.BatchOptions{Options: opts}) {
		switch {
		case r.Err != nil:
			log.Error("install on connect not queued", "account", account, "widget", ps[k].WidgetCode, "error", r.Err)
		default:
			n++
		}
	}
	return n
}
