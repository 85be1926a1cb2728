// Package console is the worker's web console: asynqmon (queues, tasks,
// servers) under /ui, with payload and result formatters that show no
// secret, read-only unless allowed; and a server-rendered results page
// under /results that filters by account, widget, status and error class
// and replays what failed (a button when writable, else the command).
package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"

	"github.com/widgetq/widgetq/internal/replay"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/tasks"
)

// UI returns asynqmon rooted at root (e.g. "/ui"), showing payloads
// through FormatPayload. writable allows deleting, running and archiving
// tasks from the browser.
func UI(root string, opt asynq.RedisConnOpt, writable bool) *asynqmon.HTTPHandler {
	return asynqmon.New(asynqmon.Options{
		RootPath:         root,
		RedisConnOpt:     opt,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(FormatPayload),
		ResultFormatter:  asynqmon.ResultFormatterFunc(func(string, []byte) string { return "" }),
		ReadOnly:         !writable,
	})
}

// hidden stands for a value the console does not show.
const hidden = "•••"

// FormatPayload shows a widgetq payload with every settings value hidden
// (only the widget's template knows which are passwords, so none is
// shown) and anything else as its size only.
func FormatPayload(taskType string, payload []byte) string {
	var view any
	switch taskType {
	case tasks.TypeInstallWidget:
		p, err := tasks.DecodeInstallWidget(payload)
		if err != nil {
			return fmt.Sprintf("(%d bytes, not a valid widgetq payload: %s)", len(payload), fieldOnly(err))
		}
		settings := map[string]string{}
		var raw map[string]json.RawMessage
		if json.Unmarshal(p.Settings, &raw) == nil {
			for k := range raw {
				settings[k] = hidden
			}
		}
		v := map[string]any{"account_id": p.AccountID, "widget_code": p.WidgetCode, "enqueue_id": p.EnqueueID, "settings": settings}
		if p.Integration != "" {
			v["integration"] = p.Integration
		}
		if p.SealedSettings != "" {
			v["settings"] = "(sealed)"
		}
		view = v
	case tasks.TypeUninstallWidget:
		p, err := tasks.DecodeUninstallWidget(payload)
		if err != nil {
			return fmt.Sprintf("(%d bytes, not a valid widgetq payload: %s)", len(payload), fieldOnly(err))
		}
		view = p
	case tasks.TypeConnectAccount:
		// The code is a credential: never shown, even sealed.
		p, err := tasks.DecodeConnectAccount(payload)
		if err != nil {
			return fmt.Sprintf("(%d bytes, not a valid widgetq payload: %s)", len(payload), fieldOnly(err))
		}
		view = map[string]any{"integration": p.Integration, "base_url": p.BaseURL, "code": hidden, "received_at": p.ReceivedAt}
	default:
		return fmt.Sprintf("(%d bytes of a %q task, not shown)", len(payload), taskType)
	}
	b, _ := json.MarshalIndent(view, "", "  ")
	return string(b)
}

// fieldOnly keeps the field a decoding error names, never the value.
func fieldOnly(err error) string {
	var fe *tasks.FieldError
	if !errors.As(err, &fe) {
		return "invalid"
	}
	return fe.Field + " is invalid"
}

// ResultReader is what the results page reads (*store.Store provides
// it).
type ResultReader interface {
	Result(ctx context.Context, account int64, code string) (*store.Result, error)
	Results(ctx context.Context, q store.Query) (store.Page, error)
	CountByStatus(ctx context.Context) (map[store.Status]int64, error)
}

// Results serves the results page.
type Results struct {
	Store ResultReader
	// Prefix is the console's path prefix (e.g. "/results").
	Prefix string
	// Replayer, when set (a writable console), puts a replay button on
	// each failure; without it the page shows the command instead.
	Replayer *replay.Replayer
}

// Replay replays one failed result: POST {Prefix}/replay with account and
// widget, then back to the page filtered on the account. A request from
// another origin is refused (a form on another site must not replay).
func (h *Results) Replay(w http.ResponseWriter, r *http.Request) {
	if h.Replayer == nil {
		http.Error(w, "the console is view-only (worker -admin-ui-writable allows replays)", http.StatusForbidden)
		return
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	id, err := strconv.ParseInt(r.FormValue("account"), 10, 64)
	code := r.FormValue("widget")
	if err != nil || id <= 0 || code == "" {
		http.Error(w, "account and widget: required", http.StatusBadRequest)
		return
	}
	res, err := h.Store.Result(r.Context(), id, code)
	if err != nil {
		http.Error(w, fmt.Sprintf("account %d widget %s: %v", id, code, err), http.StatusNotFound)
		return
	}
	msg := ""
	if res.Status != store.StatusFailed {
		msg = fmt.Sprintf("not replayed: account %d widget %s is %s", id, code, res.Status)
	} else {
		d, err := h.Replayer.One(r.Context(), *res, nil, false)
		switch {
		case err != nil:
			msg = "replay failed: " + err.Error()
		case d.Outcome == replay.Lost:
			msg = fmt.Sprintf("cannot replay %s: the archived task is gone; enqueue it again", d.TaskID)
		case d.Outcome == replay.Skipped:
			msg = fmt.Sprintf("skipped %s: already %s", d.TaskID, d.State)
		default:
			msg = fmt.Sprintf("replayed %s", d.TaskID)
		}
	}
	http.Redirect(w, r, fmt.Sprintf("%s?account=%d&msg=%s", h.Prefix, id, url.QueryEscape(msg)), http.StatusSeeOther)
}

type row struct {
	store.Result
	Class, Detail, Replay string
}

var page = template.Must(template.New("results").Funcs(template.FuncMap{
	"time":  func(r store.Result) string { return r.UpdatedAt.UTC().Format("2006-01-02 15:04:05") },
	"integ": store.IntegrationOf,
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>widgetq results</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.failed{color:#a40000}.installed,.already_installed,.uninstalled{color:#176117}
form{margin-bottom:1em}input,select{margin-right:.5em}code{background:#f4f4f4;padding:0 .25em}
.counts span{margin-right:1em}
</style></head><body>
<h1>widgetq results</h1>
<p><a href="{{.UI}}">Queues and tasks</a></p>
{{if .Msg}}<p><b>{{.Msg}}</b></p>{{end}}
<form method="get" action="{{.Self}}">
<label>account <input name="account" value="{{.Q.Account}}" size="10"></label>
<label>widget <input name="widget" value="{{.Q.Widget}}" size="16"></label>
<label>status <select name="status"><option value="">any</option>{{range .Statuses}}<option{{if eq . $.Q.Status}} selected{{end}}>{{.}}</option>{{end}}</select></label>
<label>class <input name="class" value="{{.Q.Class}}" size="14"></label>
<label>integration <input name="integration" value="{{.Q.Integration}}" size="14"></label>
<button>filter</button>
</form>
<p class="counts">{{range .Counts}}<span>{{.Name}}: <b>{{.N}}</b></span>{{end}}</p>
{{if .Err}}<p class="failed">{{.Err}}</p>{{end}}
<p>{{len .Rows}} shown{{if .More}} (the first {{len .Rows}}; narrow the filter){{end}}.{{if .ReplayAll}} Replay these failures: <code>{{.ReplayAll}}</code>{{end}}</p>
<table><thead><tr><th>account</th><th>widget</th><th>integration</th><th>op</th><th>status</th><th>attempts</th><th>class</th><th>detail</th><th>updated (UTC)</th><th>replay</th></tr></thead><tbody>
{{range .Rows}}<tr><td>{{.AccountID}}</td><td>{{.WidgetCode}}</td><td>{{integ .Integration}}</td><td>{{.Operation}}</td><td class="{{.Status}}">{{.Status}}</td><td>{{.Attempts}}</td><td>{{.Class}}</td><td>{{.Detail}}</td><td>{{time .Result}}</td><td>{{if .Replay}}{{if $.Writable}}<form method="post" action="{{$.Self}}/replay"><input type="hidden" name="account" value="{{.AccountID}}"><input type="hidden" name="widget" value="{{.WidgetCode}}"><button>replay</button></form>{{else}}<code>{{.Replay}}</code>{{end}}{{end}}</td></tr>
{{else}}<tr><td colspan="10">no results</td></tr>{{end}}
</tbody></table></body></html>
`))

type query struct {
	Account, Widget, Status, Class, Integration string
}

// ServeHTTP renders the page.
func (h *Results) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := query{Account: strings.TrimSpace(r.FormValue("account")), Widget: strings.TrimSpace(r.FormValue("widget")),
		Status: r.FormValue("status"), Class: strings.TrimSpace(r.FormValue("class")), Integration: strings.TrimSpace(r.FormValue("integration"))}
	data := struct {
		Q        query
		Self, UI string
		Statuses []store.Status
		Counts   []struct {
			Name string
			N    int64
		}
		Rows      []row
		More      bool
		Err       string
		ReplayAll string
		Msg       string
		Writable  bool
	}{Q: q, Self: h.Prefix, UI: "/ui/", Statuses: store.Statuses, Msg: r.FormValue("msg"), Writable: h.Replayer != nil}
	ctx := r.Context()
	if counts, err := h.Store.CountByStatus(ctx); err == nil {
		for _, s := range store.Statuses {
			data.Counts = append(data.Counts, struct {
				Name string
				N    int64
			}{string(s), counts[s]})
		}
	}
	sq := store.Query{Status: store.Status(q.Status), Limit: 1000}
	if q.Status != "" && !store.Status(q.Status).Valid() {
		data.Err = fmt.Sprintf("status: %q is not a status", q.Status)
		sq.Status = ""
	}
	if q.Account != "" {
		id, err := strconv.ParseInt(q.Account, 10, 64)
		if err != nil || id <= 0 {
			data.Err = fmt.Sprintf("account: want a positive integer, got %q", q.Account)
		} else {
			sq.AccountID = id
		}
	}
	res, err := h.Store.Results(ctx, sq)
	if err != nil {
		data.Err = "Redis failed: " + err.Error()
	}
	failed := 0
	for _, rs := range res.Results {
		if q.Widget != "" && rs.WidgetCode != q.Widget {
			continue
		}
		if q.Integration != "" && store.IntegrationOf(rs.Integration) != q.Integration {
			continue
		}
		rw := row{Result: rs}
		if rs.LastError != nil {
			rw.Class, rw.Detail = rs.LastError.Class, rs.LastError.Detail
		}
		if q.Class != "" && rw.Class != q.Class {
			continue
		}
		if rs.Status == store.StatusFailed {
			failed++
			rw.Replay = fmt.Sprintf("enqueue replay --account %d --widget %s", rs.AccountID, rs.WidgetCode)
		}
		data.Rows = append(data.Rows, rw)
		if len(data.Rows) == 500 {
			data.More = true
			break
		}
	}
	if failed > 1 {
		var args []string
		if q.Account != "" {
			args = append(args, "--account "+q.Account)
		}
		if q.Widget != "" {
			args = append(args, "--widget "+q.Widget)
		}
		if q.Class != "" {
			args = append(args, "--class "+q.Class)
		}
		if q.Integration != "" && tasks.ValidIntegration(q.Integration) {
			args = append(args, "--integration "+q.Integration)
		}
		if len(args) == 0 {
			args = append(args, "--all")
		}
		data.ReplayAll = "enqueue replay " + strings.Join(args, " ")
	}
	sort.SliceStable(data.Rows, func(i, j int) bool { return data.Rows[i].AccountID < data.Rows[j].AccountID })
	var buf bytes.Buffer
	if err := page.Execute(&buf, data); err != nil {
		http.Error(w, "render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}
