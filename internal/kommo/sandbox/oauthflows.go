package sandbox

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// currentSubdomain is GET {api_domain}/oauth2/account/current/subdomain:
// with the header X-Refresh-Token, the account's id, subdomain, domain and
// top-level domain as they are now (the PHP client asks after a 401 or 404
// at a stored host: the subdomain may have changed).
func (s *Server) currentSubdomain(w http.ResponseWriter, r *http.Request) {
	rt := r.Header.Get("X-Refresh-Token")
	s.mu.Lock()
	s.seq++
	w.Header().Set("X-Request-Id", fmt.Sprintf("sbx%08x%04x", s.seq, s.rng.Uint32()&0xffff))
	g := s.refresh[rt]
	var a *account
	if g != nil && !g.used {
		a = g.acct
	}
	s.mu.Unlock()
	if a == nil {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"title":"Unauthorized","type":"https://httpstatus.es/401","status":401,"detail":"Refresh token is invalid"}`))
		return
	}
	b, _ := json.Marshal(map[string]any{"id": a.ID, "subdomain": a.Subdomain, "domain": "kommo.com", "top_level_domain": "com"})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// RenameAccount changes an account's subdomain, as Kommo lets an
// administrator do: its old base answers 404 from then on; its tokens stay
// valid at the new one.
func (s *Server) RenameAccount(old, renamed string) error {
	if renamed == "" || strings.ContainsAny(renamed, "/.?#") {
		return fmt.Errorf("sandbox: bad subdomain %q", renamed)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[old]
	if a == nil {
		return fmt.Errorf("sandbox: no account %q", old)
	}
	if _, taken := s.accounts[renamed]; taken {
		return fmt.Errorf("sandbox: subdomain %q exists", renamed)
	}
	delete(s.accounts, old)
	a.Subdomain = renamed
	a.stats.Subdomain = renamed
	s.accounts[renamed] = a
	return nil
}

// ConnectResult is what the sandbox saw of a simulated install redirect.
type ConnectResult struct {
	// Status is the redirect URI's answer (0: none within 3 s, or no
	// connection).
	Status int `json:"status"`
	// Code is the authorization code sent (tests use it to check it was
	// spent).
	Code string `json:"code"`
}

// Connect simulates a user installing the integration clientID in an
// account: the sandbox issues an authorization code and calls the
// client's redirect URI (redirect, when not empty, instead) with code,
// referer (the account's host — and, the sandbox being path-based, its
// /k/{subdomain} prefix), client_id and state, waiting 3 s at most for
// the answer and never calling again, as Kommo does.
func (s *Server) Connect(ctx context.Context, clientID, subdomain, state, redirect, serverURL string) (ConnectResult, error) {
	c := s.clientByID(clientID)
	if c == nil {
		return ConnectResult{}, fmt.Errorf("sandbox: no client %q", clientID)
	}
	if redirect == "" {
		redirect = c.RedirectURI
	}
	u, err := url.Parse(redirect)
	if err != nil || u.Host == "" {
		return ConnectResult{}, fmt.Errorf("sandbox: client %q: no redirect URI to call", clientID)
	}
	code, err := s.IssueCodeFor(clientID, subdomain, 0)
	if err != nil {
		return ConnectResult{}, err
	}
	q := u.Query()
	q.Set("code", code)
	q.Set("referer", strings.TrimPrefix(strings.TrimPrefix(BaseURL(serverURL, subdomain), "http://"), "https://"))
	q.Set("client_id", clientID)
	if state != "" {
		q.Set("state", state)
	} else {
		q.Set("from_widget", "1")
	}
	u.RawQuery = q.Encode()
	return ConnectResult{Status: call(ctx, u.String()), Code: code}, nil
}

// Revoke simulates a user disconnecting the integration clientID from an
// account: its tokens of the account stop working, and the revoke hook
// (hook) gets Kommo's signed GET: client_uuid, account_id, and signature =
// hex HMAC-SHA256("{client_id}|{account_id}") keyed with the client
// secret. It returns the hook's answer (0: none within 3 s).
func (s *Server) Revoke(ctx context.Context, clientID, subdomain, hook string) (int, error) {
	c := s.clientByID(clientID)
	if c == nil {
		return 0, fmt.Errorf("sandbox: no client %q", clientID)
	}
	s.mu.Lock()
	a := s.accounts[subdomain]
	if a == nil {
		s.mu.Unlock()
		return 0, fmt.Errorf("sandbox: no account %q", subdomain)
	}
	for k, t := range s.access {
		if t.acct == a && t.client == clientID {
			delete(s.access, k)
		}
	}
	for _, g := range s.refresh {
		if g.acct == a && g.client == clientID {
			g.used = true
		}
	}
	id := strconv.Itoa(a.ID)
	s.mu.Unlock()
	if hook == "" {
		return 0, nil
	}
	m := hmac.New(sha256.New, []byte(c.Secret))
	m.Write([]byte(clientID + "|" + id))
	u, err := url.Parse(hook)
	if err != nil {
		return 0, fmt.Errorf("sandbox: revoke hook: %w", err)
	}
	q := u.Query()
	q.Set("client_uuid", clientID)
	q.Set("account_id", id)
	q.Set("signature", hex.EncodeToString(m.Sum(nil)))
	u.RawQuery = q.Encode()
	return call(ctx, u.String()), nil
}

// call GETs u as Kommo calls an integration: 3 s at most, the answer's
// status read and the body thrown away (0: no answer).
func call(ctx context.Context, u string) int {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode
}

// flowRequest is the body of POST /_sandbox/connect, /revoke and /rename.
type flowRequest struct {
	Client  string `json:"client"`
	Account string `json:"account"`
	State   string `json:"state"`
	// URL is the redirect URI (connect) or the revoke hook (revoke).
	URL string `json:"url"`
	// To is the new subdomain (rename).
	To string `json:"to"`
}

func readFlow(w http.ResponseWriter, r *http.Request) (flowRequest, bool) {
	var f flowRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		http.Error(w, "sandbox: "+err.Error(), http.StatusBadRequest)
		return f, false
	}
	return f, true
}

func (s *Server) postConnect(w http.ResponseWriter, r *http.Request) {
	f, ok := readFlow(w, r)
	if !ok {
		return
	}
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	res, err := s.Connect(r.Context(), f.Client, f.Account, f.State, f.URL, scheme+r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]int{"status": res.Status})
}

func (s *Server) postRevoke(w http.ResponseWriter, r *http.Request) {
	f, ok := readFlow(w, r)
	if !ok {
		return
	}
	st, err := s.Revoke(r.Context(), f.Client, f.Account, f.URL)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]int{"status": st})
}

func (s *Server) postRename(w http.ResponseWriter, r *http.Request) {
	f, ok := readFlow(w, r)
	if !ok {
		return
	}
	if err := s.RenameAccount(f.Account, f.To); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
