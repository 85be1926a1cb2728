package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

func (s *Server) selfHref(x *exchange, path string) string {
	scheme := "https"
	if x.r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + x.r.Host + "/k/" + x.acct.Subdomain + path
}

// widgetJSON writes a widget the way Kommo does, from the sandbox's own
// model. withSettings adds the account's settings: {} when installed with
// none, [] (a PHP empty array) when not installed.
// widgetOut is the widget model as Kommo writes it. Version, Rating and
// Settings are sent as they are, odd shapes and all.
type widgetOut struct {
	ID                int            `json:"id"`
	Code              string         `json:"code"`
	Version           any            `json:"version"`
	Rating            any            `json:"rating"`
	SettingsTemplate  []settingOut   `json:"settings_template"`
	IsLeadSource      bool           `json:"is_lead_source"`
	IsWorkWithDP      bool           `json:"is_work_with_dp"`
	IsCRMTemplate     bool           `json:"is_crm_template"`
	ClientUUID        *string        `json:"client_uuid"`
	IsActiveInAccount bool           `json:"is_active_in_account"`
	PipelineID        *int           `json:"pipeline_id"`
	Settings          any            `json:"settings,omitempty"`
	Links             map[string]any `json:"_links"`
}

type settingOut struct {
	Key        string `json:"key"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	IsRequired bool   `json:"is_required"`
}

// widgetJSON writes a widget the way Kommo does, from the sandbox's own
// model. withSettings adds the account's settings: the object when
// installed, [] (a PHP empty array) when not.
func (s *Server) widgetJSON(x *exchange, w *Widget, installed bool, settings json.RawMessage, withSettings bool) *widgetOut {
	tmpl := make([]settingOut, len(w.Template))
	for i, st := range w.Template {
		tmpl[i] = settingOut{Key: st.Key, Name: st.Name, Type: st.Type, IsRequired: st.Required}
	}
	out := &widgetOut{
		ID: w.ID, Code: w.Code, Version: w.Version, Rating: w.Rating, SettingsTemplate: tmpl,
		IsLeadSource: w.LeadSource, IsWorkWithDP: w.WorkWithDP, IsCRMTemplate: w.CRMTemplate, ClientUUID: w.ClientUUID,
		IsActiveInAccount: installed,
		Links:             map[string]any{"self": map[string]string{"href": s.selfHref(x, "/api/v4/widgets/"+w.Code)}},
	}
	if withSettings {
		if installed && len(settings) > 0 {
			out.Settings = settings
		} else {
			out.Settings = []any{}
		}
	}
	return out
}

// widgetLocked returns an available widget, or nil.
func (s *Server) widgetLocked(code string) *Widget {
	w := s.widgets[code]
	if w == nil || w.Unavailable {
		return nil
	}
	return w
}

func (s *Server) listWidgets(x *exchange) {
	if !s.bearer(x) {
		return
	}
	q := x.r.URL.Query()
	page, limit := 1, 50
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			x.problem(http.StatusBadRequest, "Bad Request", "page must be a positive integer", nil)
			return
		}
		page = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 250 {
			x.problem(http.StatusBadRequest, "Bad Request", "limit must be between 1 and 250", nil)
			return
		}
		limit = n
	}
	s.mu.Lock()
	var avail []*Widget
	for _, w := range s.order {
		if !w.Unavailable {
			avail = append(avail, w)
		}
	}
	start := (page - 1) * limit
	var items []*widgetOut
	for i := start; i < len(avail) && i < start+limit; i++ {
		_, inst := x.acct.installed[avail[i].Code]
		items = append(items, s.widgetJSON(x, avail[i], inst, nil, false))
	}
	more := start+limit < len(avail)
	s.mu.Unlock()
	if len(items) == 0 {
		// Kommo answers an empty page with 204 and no body.
		x.status = http.StatusNoContent
		x.w.WriteHeader(http.StatusNoContent)
		return
	}
	pageURL := func(p int) string {
		return s.selfHref(x, "/api/v4/widgets?"+url.Values{"page": {strconv.Itoa(p)}, "limit": {strconv.Itoa(limit)}}.Encode())
	}
	links := map[string]any{"self": map[string]string{"href": pageURL(page)}}
	if more {
		links["next"] = map[string]string{"href": pageURL(page + 1)}
	}
	if page > 1 {
		links["prev"] = map[string]string{"href": pageURL(page - 1)}
	}
	x.hal(http.StatusOK, map[string]any{"_page": page, "_links": links, "_embedded": map[string]any{"widgets": items}})
}

func (s *Server) getWidget(x *exchange) {
	if !s.bearer(x) {
		return
	}
	s.mu.Lock()
	w := s.widgetLocked(x.r.PathValue("code"))
	var body *widgetOut
	if w != nil {
		settings, inst := x.acct.installed[w.Code]
		// Tokens here are all issued to the one integration, which owns
		// every widget, so settings come back.
		body = s.widgetJSON(x, w, inst, settings, true)
	}
	s.mu.Unlock()
	if w == nil {
		x.problem(http.StatusNotFound, "Not Found", "Widget not found or unavailable", nil)
		return
	}
	x.hal(http.StatusOK, body)
}

func (s *Server) installWidget(x *exchange) {
	if !s.bearer(x) {
		return
	}
	if !s.isAdmin(x.token) {
		x.problem(http.StatusForbidden, "Forbidden", "Only account administrators may install widgets", nil)
		return
	}
	s.mu.Lock()
	w := s.widgetLocked(x.r.PathValue("code"))
	s.mu.Unlock()
	if w == nil {
		x.problem(http.StatusNotFound, "Not Found", "Widget not found or unavailable", nil)
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(x.w, x.r.Body, 1<<20))
	if err != nil {
		x.problem(http.StatusBadRequest, "Bad Request", "Request body is too large or unreadable", nil)
		return
	}
	var settings map[string]json.RawMessage
	if err := json.Unmarshal(raw, &settings); err != nil || settings == nil {
		x.problem(http.StatusBadRequest, "Bad Request", "Request body must be a JSON object", nil)
		return
	}
	if errs := checkSettings(w.Template, settings); len(errs) > 0 {
		x.problem(http.StatusBadRequest, "Bad Request", "Request validation failed", map[string]any{
			"validation-errors": []map[string]any{{"request_id": "0", "errors": errs}},
		})
		return
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, raw)
	s.mu.Lock()
	x.acct.installed[w.Code] = compact.Bytes()
	if x.acct.stats.Installed == nil {
		x.acct.stats.Installed = map[string]int64{}
	}
	x.acct.stats.Installed[w.Code]++
	x.acct.stats.Installs++
	s.counters.total.Installs++
	body := s.widgetJSON(x, w, true, compact.Bytes(), true)
	s.mu.Unlock()
	x.hal(http.StatusOK, body)
}

// checkSettings is the sandbox's own reading of an install body against a
// template, answering with Kommo's validation-error entries. Keys that are
// not in the template are ignored, as Kommo stores what a widget asks for.
func checkSettings(tmpl []Setting, settings map[string]json.RawMessage) []map[string]string {
	var errs []map[string]string
	bad := func(code, path, detail string) {
		errs = append(errs, map[string]string{"code": code, "path": path, "detail": detail})
	}
	for _, st := range tmpl {
		v, ok := settings[st.Key]
		if !ok || string(v) == "null" {
			if st.Required {
				bad("NotBlank", st.Key, "This value should not be blank.")
			}
			continue
		}
		switch st.Type {
		case "text", "pass":
			var str string
			if json.Unmarshal(v, &str) != nil {
				bad("InvalidType", st.Key, "This value should be of type string.")
			} else if st.Required && strings.TrimSpace(str) == "" {
				bad("NotBlank", st.Key, "This value should not be blank.")
			}
		case "users":
			var m map[string]string
			if json.Unmarshal(v, &m) != nil {
				bad("InvalidType", st.Key, "This value should be an object of user ID to extension.")
				continue
			}
			for k := range m {
				if n, err := strconv.Atoi(k); err != nil || n <= 0 {
					bad("NotSupportedChoice", st.Key+"."+k, "The user does not exist.")
				}
			}
		case "users_lp":
			var m map[string]struct {
				Login    *string `json:"login"`
				Password *string `json:"password"`
			}
			if json.Unmarshal(v, &m) != nil {
				bad("InvalidType", st.Key, "This value should be an object of user ID to login and password.")
				continue
			}
			for k, e := range m {
				if n, err := strconv.Atoi(k); err != nil || n <= 0 {
					bad("NotSupportedChoice", st.Key+"."+k, "The user does not exist.")
				}
				if e.Login == nil || e.Password == nil {
					bad("NotBlank", st.Key+"."+k, "Login and password should not be blank.")
				}
			}
		}
	}
	return errs
}

func (s *Server) uninstallWidget(x *exchange) {
	if !s.bearer(x) {
		return
	}
	if !s.isAdmin(x.token) {
		x.problem(http.StatusForbidden, "Forbidden", "Only account administrators may uninstall widgets", nil)
		return
	}
	s.mu.Lock()
	w := s.widgetLocked(x.r.PathValue("code"))
	if w != nil {
		// Uninstalling a widget that is not installed succeeds too.
		if _, ok := x.acct.installed[w.Code]; ok {
			delete(x.acct.installed, w.Code)
			if x.acct.stats.Uninstalled == nil {
				x.acct.stats.Uninstalled = map[string]int64{}
			}
			x.acct.stats.Uninstalled[w.Code]++
			x.acct.stats.Uninstalls++
			s.counters.total.Uninstalls++
		}
	}
	s.mu.Unlock()
	if w == nil {
		x.problem(http.StatusNotFound, "Not Found", "Widget not found or unavailable", nil)
		return
	}
	if s.cfg.DeleteAnswer200 {
		x.write(http.StatusOK, "application/json", []byte("{}"))
		return
	}
	x.status = http.StatusNoContent
	x.w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getAccount(x *exchange) {
	if !s.bearer(x) {
		return
	}
	a := x.acct
	x.hal(http.StatusOK, map[string]any{
		"id":                         a.ID,
		"name":                       a.Name,
		"subdomain":                  a.Subdomain,
		"created_at":                 1700000000,
		"created_by":                 a.Users[0].ID,
		"current_user_id":            x.token.userID,
		"country":                    "US",
		"currency":                   "USD",
		"currency_symbol":            "$",
		"customers_mode":             "disabled",
		"is_unsorted_on":             true,
		"is_loss_reason_enabled":     true,
		"is_helpbot_enabled":         false,
		"is_technical_account":       false,
		"contact_name_display_order": 1,
		"_links":                     map[string]any{"self": map[string]string{"href": s.selfHref(x, "/api/v4/account")}},
	})
}

// tokenRequest is the token endpoint's body, sent as a form (x/oauth2) or
// as JSON (Kommo's examples).
type tokenRequest struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	GrantType    string `json:"grant_type"`
	Code         string `json:"code"`
	RefreshToken string `json:"refresh_token"`
	RedirectURI  string `json:"redirect_uri"`
}

func (s *Server) token(x *exchange) {
	var req tokenRequest
	body := http.MaxBytesReader(x.w, x.r.Body, 1<<16)
	if strings.HasPrefix(x.r.Header.Get("Content-Type"), "application/json") {
		if err := json.NewDecoder(body).Decode(&req); err != nil {
			x.oauthProblem(http.StatusBadRequest, "Bad Request", "Request body must be JSON", "")
			return
		}
	} else {
		if err := x.r.ParseForm(); err != nil {
			x.oauthProblem(http.StatusBadRequest, "Bad Request", "Request body must be a form", "")
			return
		}
		f := x.r.PostForm
		req = tokenRequest{ClientID: f.Get("client_id"), ClientSecret: f.Get("client_secret"), GrantType: f.Get("grant_type"),
			Code: f.Get("code"), RefreshToken: f.Get("refresh_token"), RedirectURI: f.Get("redirect_uri")}
	}
	cl := s.clientByID(req.ClientID)
	if cl == nil || req.ClientSecret != cl.Secret {
		x.oauthProblem(http.StatusUnauthorized, "Unauthorized", "Client authentication failed", "Check client_id and client_secret")
		return
	}
	if cl.RedirectURI != "" && req.RedirectURI != cl.RedirectURI {
		x.oauthProblem(http.StatusBadRequest, "Bad Request", "redirect_uri does not match the integration's", "Check redirect_uri")
		return
	}
	now := s.cfg.Now()
	s.mu.Lock()
	var g *grant
	switch req.GrantType {
	case "authorization_code":
		g = s.codes[req.Code]
		if g == nil || g.used || g.acct != x.acct || g.client != cl.ID || now.After(g.expiry) {
			s.mu.Unlock()
			x.oauthProblem(http.StatusBadRequest, "Bad Request", "Authorization code is invalid", "Authorization code has been revoked")
			return
		}
	case "refresh_token":
		g = s.refresh[req.RefreshToken]
		if g == nil || g.used || g.acct != x.acct || g.client != cl.ID {
			switch {
			case g != nil && g.client != cl.ID:
				// Another integration's refresh token: Kommo refuses it.
				x.acct.stats.WrongClient++
				s.counters.total.WrongClient++
			case g != nil && g.used:
				x.acct.stats.RevokedReuses++
				s.counters.total.RevokedReuses++
			}
			s.mu.Unlock()
			x.oauthProblem(http.StatusUnauthorized, "Unauthorized", "Refresh token is invalid", "Token has been revoked")
			return
		}
		x.acct.stats.Refreshes++
		s.counters.total.Refreshes++
		s.counters.clientLocked(cl.ID).Refreshes++
	default:
		s.mu.Unlock()
		x.oauthProblem(http.StatusBadRequest, "Bad Request", fmt.Sprintf("Unsupported grant_type %.30q", req.GrantType), "")
		return
	}
	g.used = true
	t := s.issueLocked(g.acct, g.client, g.userID)
	s.mu.Unlock()
	b, _ := json.Marshal(map[string]any{
		"token_type":    "Bearer",
		"expires_in":    int(t.ExpiresAt.Sub(now) / time.Second),
		"access_token":  t.AccessToken,
		"refresh_token": t.RefreshToken,
		"server_time":   now.Unix(),
	})
	x.write(http.StatusOK, "application/json", b)
}

// oauthProblem is the token endpoint's error: problem+json with a hint,
// as Kommo's OAuth server sends.
func (x *exchange) oauthProblem(status int, title, detail, hint string) {
	var extra map[string]any
	if hint != "" {
		extra = map[string]any{"hint": hint}
	}
	x.problem(status, title, detail, extra)
}
