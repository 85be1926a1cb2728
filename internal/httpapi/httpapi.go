// Package httpapi is widgetq's producer API over HTTP, for backends not
// written in Go (`enqueue serve`; api/openapi.yaml describes it):
//
//	POST /v1/installs              one install or an array, as bulk lines
//	POST /v1/uninstalls            one uninstall or an array
//	GET  /v1/accounts/{id}/results the account's results
//	PUT  /v1/accounts/{id}         the account's credentials
//	GET  /v1/batches/{id}          a batch's counts, and whether it is done
//	GET  /v1/results               results, filtered, in pages (next_cursor)
//	GET  /oauth/callback           Kommo's install redirect (no token)
//	GET  /oauth/revoked            Kommo's revoke hook (no token)
//
// Every /v1 route needs the bearer token. Errors are problem+json (RFC 9457)
// naming the bad field; an array gets one outcome per item, in order.
// Tokens and settings never appear in an answer or a log.
package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/widgetq/widgetq/internal/bearer"
	"github.com/widgetq/widgetq/internal/bulk"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/webhook"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

// Limits of one request.
const (
	DefaultMaxBody  = 8 << 20
	DefaultMaxItems = 5000
)

// Server answers the API.
type Server struct {
	Prod  *producer.Producer
	Store *store.Store
	// Tokens are accepted as "Authorization: Bearer <token>": any one of
	// them, so a token can be rotated without downtime. None: every
	// request is refused.
	Tokens []string
	// MaxBody and MaxItems bound a request (defaults 8 MiB, 5,000).
	MaxBody  int64
	MaxItems int
	Logger   *slog.Logger
	// Default is the integration KOMMO_CLIENT_ID and its friends configure
	// (nil: none), for Kommo's calls that name its client ID; a registered
	// integration of the same client ID wins.
	Default *store.Integration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Webhook says whether batches may carry a callback_url, and where it
	// may point.
	Webhook webhook.Config
}

// Routes are the API's method-and-path patterns (api/openapi.yaml has
// each, and a test holds them to it).
var Routes = []string{"POST /v1/installs", "POST /v1/uninstalls", "GET /v1/accounts/{id}/results", "PUT /v1/accounts/{id}", "GET /v1/batches/{id}", "GET /v1/results"}

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	api := http.NewServeMux()
	for i, h := range []http.HandlerFunc{s.idempotent(s.installs), s.idempotent(s.uninstalls), s.results, s.putAccount, s.getBatch, s.listResults} {
		api.HandleFunc(Routes[i], h)
	}
	mux := http.NewServeMux()
	mux.Handle("/", s.auth(api))
	for i, h := range []http.HandlerFunc{s.oauthCallback, s.oauthRevoked} {
		mux.HandleFunc(OAuthRoutes[i], h)
	}
	return mux
}

// Problem is an RFC 9457 problem detail.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Field names the request field that is wrong, when one is.
	Field string `json:"field,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, kind, detail string) {
	p := Problem{Type: "https://github.com/widgetq/widgetq/blob/main/api/problems.md#" + kind, Title: http.StatusText(status), Status: status, Detail: detail}
	if f, _, ok := strings.Cut(detail, ":"); ok && !strings.ContainsAny(f, " \"") {
		p.Field = f
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) auth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !bearer.Match(r.Header.Get("Authorization"), s.Tokens) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="widgetq"`)
			writeProblem(w, http.StatusUnauthorized, "unauthorized", "a bearer token is required")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// body reads a request body within the size limit and splits it into
// items: one object, or the elements of an array. many says which.
func (s *Server) body(w http.ResponseWriter, r *http.Request) (items []json.RawMessage, many bool, ok bool) {
	limit := s.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	maxItems := s.MaxItems
	if maxItems <= 0 {
		maxItems = DefaultMaxItems
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeProblem(w, http.StatusUnsupportedMediaType, "content-type", "Content-Type: want application/json, got "+strconv.Quote(ct))
		return nil, false, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeProblem(w, http.StatusRequestEntityTooLarge, "too-large", fmt.Sprintf("body: more than %d bytes; send fewer items per request", limit))
		return nil, false, false
	}
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "malformed", "body: "+err.Error())
		return nil, false, false
	}
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		if err := json.Unmarshal(b, &items); err != nil {
			writeProblem(w, http.StatusBadRequest, "malformed", "body: want a JSON object or an array of objects: "+strings.TrimPrefix(err.Error(), "json: "))
			return nil, false, false
		}
		if len(items) > maxItems {
			writeProblem(w, http.StatusRequestEntityTooLarge, "too-many", fmt.Sprintf("body: %d items, more than the %d allowed per request", len(items), maxItems))
			return nil, false, false
		}
		return items, true, true
	}
	return []json.RawMessage{b}, false, true
}

// ItemResult is the outcome of one item of a request.
type ItemResult struct {
	Index   int    `json:"index"`
	Outcome string `json:"outcome"` // queued, already_queued, invalid, error
	TaskID  string `json:"task_id,omitempty"`
	Error   string `json:"error,omitempty"`
	// BatchID is the batch a queued item joined.
	BatchID string `json:"batch_id,omitempty"`
}

// Batch is the answer to an array.
type Batch struct {
	// BatchID is the batch the queued items joined (GET /v1/batches/{id});
	// absent when none was queued.
	BatchID string         `json:"batch_id,omitempty"`
	Results []ItemResult   `json:"results"`
	Counts  map[string]int `json:"counts"`
}

func (s *Server) answer(w http.ResponseWriter, many bool, res []ItemResult) {
	if !many {
		r := res[0]
		switch r.Outcome {
		case "invalid":
			writeProblem(w, http.StatusUnprocessableEntity, "invalid", r.Error)
		case "error":
			writeProblem(w, http.StatusServiceUnavailable, "unavailable", r.Error)
		default:
			writeJSON(w, http.StatusAccepted, r)
		}
		return
	}
	b := Batch{Results: res, Counts: map[string]int{}}
	for _, r := range res {
		b.Counts[r.Outcome]++
		if r.BatchID != "" {
			b.BatchID = r.BatchID
		}
	}
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) installs(w http.ResponseWriter, r *http.Request) {
	cb, ok := s.callback(w, r)
	if !ok {
		return
	}
	items, many, ok := s.body(w, r)
	if !ok {
		return
	}
	s.answer(w, many, batch(s, items, bulk.ParseJSONLine, func(p []tasks.InstallWidgetPayload) []producer.Result {
		return s.Prod.InstallMany(r.Context(), p, producer.BatchOptions{RequireAccounts: true, CallbackURL: cb})
	}))
}

// batch parses each item, sends the valid ones as one batch, and returns
// one outcome per item, in order.
func batch[P any](s *Server, items []json.RawMessage, parse func([]byte) (P, string), send func([]P) []producer.Result) []ItemResult {
	res := make([]ItemResult, len(items))
	var payloads []P
	var at []int
	for i, it := range items {
		res[i].Index = i
		p, reason := parse(it)
		if reason != "" {
			res[i].Outcome, res[i].Error = "invalid", reason
			continue
		}
		payloads = append(payloads, p)
		at = append(at, i)
	}
	if len(payloads) > 0 {
		for j, out := range send(payloads) {
			res[at[j]] = s.itemResult(at[j], out)
		}
	}
	return res
}

func (s *Server) itemResult(i int, out producer.Result) ItemResult {
	ir := ItemResult{Index: i, Outcome: string(out.Outcome), TaskID: out.TaskID, BatchID: out.BatchID}
	switch {
	case out.Outcome == producer.Invalid:
		ir.Error = out.Err.Error()
	case out.Outcome == "":
		ir.Outcome, ir.Error = "error", "not enqueued: Redis failed; send it again"
		if s.Logger != nil {
			s.Logger.Error("enqueue failed", "error", out.Err)
		}
	}
	return ir
}

func (s *Server) uninstalls(w http.ResponseWriter, r *http.Request) {
	cb, ok := s.callback(w, r)
	if !ok {
		return
	}
	items, many, ok := s.body(w, r)
	if !ok {
		return
	}
	s.answer(w, many, batch(s, items, parseUninstall, func(p []tasks.UninstallWidgetPayload) []producer.Result {
		return s.Prod.UninstallMany(r.Context(), p, producer.BatchOptions{RequireAccounts: true, CallbackURL: cb})
	}))
}

// callback reads the batch's optional callback_url (a query parameter):
// it must be on WIDGETQ_WEBHOOK_HOSTS, and webhooks must be on.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) (string, bool) {
	cb := r.URL.Query().Get("callback_url")
	if cb == "" {
		return "", true
	}
	if !s.Webhook.Enabled() {
		writeProblem(w, http.StatusUnprocessableEntity, "invalid", "callback_url: webhooks are off here (no WIDGETQ_WEBHOOK_SECRET)")
		return "", false
	}
	if err := s.Webhook.CheckCallback(cb); err != nil {
		writeProblem(w, http.StatusUnprocessableEntity, "invalid", err.Error())
		return "", false
	}
	return cb, true
}

// getBatch answers GET /v1/batches/{id}.
func (s *Server) getBatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !tasks.ValidBatchID(id) {
		writeProblem(w, http.StatusBadRequest, "malformed", fmt.Sprintf("id: %.40q is not a batch ID", id))
		return
	}
	b, err := s.Store.Batch(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeProblem(w, http.StatusNotFound, "not-found", "id: no batch "+id+" (never made, or expired)")
		return
	}
	if err != nil {
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "Redis failed; ask again")
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// parseUninstall reads {account_id, widget_code}, nothing else, or says
// what is wrong, naming the field.
func parseUninstall(item []byte) (tasks.UninstallWidgetPayload, string) {
	var in struct {
		AccountID   json.Number `json:"account_id"`
		WidgetCode  string      `json:"widget_code"`
		Integration string      `json:"integration"`
	}
	dec := json.NewDecoder(bytes.NewReader(item))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		return tasks.UninstallWidgetPayload{}, strings.TrimPrefix(err.Error(), "json: ")
	}
	id, err := strconv.ParseInt(in.AccountID.String(), 10, 64)
	if err != nil {
		return tasks.UninstallWidgetPayload{}, fmt.Sprintf("account_id: want a positive integer, got %.30q", in.AccountID.String())
	}
	p := tasks.UninstallWidgetPayload{AccountID: id, WidgetCode: in.WidgetCode, Integration: in.Integration}
	if err := p.Validate(); err != nil {
		return p, err.Error()
	}
	return p, ""
}

func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeProblem(w, http.StatusBadRequest, "malformed", fmt.Sprintf("id: want a positive integer, got %.30q", r.PathValue("id")))
		return 0, false
	}
	return id, true
}

func (s *Server) results(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	page, err := s.Store.Results(r.Context(), store.Query{AccountID: id, Limit: 1000})
	if err != nil {
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "Redis failed; try again")
		return
	}
	if page.Results == nil {
		page.Results = []store.Result{}
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) putAccount(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	items, many, ok := s.body(w, r)
	if !ok {
		return
	}
	if many {
		writeProblem(w, http.StatusBadRequest, "malformed", "body: want one account object")
		return
	}
	acct, err := store.ParseAccountJSON(items[0], id)
	if err != nil {
		writeProblem(w, http.StatusUnprocessableEntity, "invalid", err.Error())
		return
	}
	if err := s.Store.CheckAccount(acct); err != nil {
		// A base URL off the Kommo host allow-list: never stored, so no
		// token is ever sent there.
		writeProblem(w, http.StatusUnprocessableEntity, "invalid", strings.TrimPrefix(err.Error(), fmt.Sprintf("account %d: ", id)))
		return
	}
	if err := s.Store.PutAccount(r.Context(), acct); err != nil {
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "Redis failed; try again")
		return
	}
	writeJSON(w, http.StatusOK, acct.Info())
}
