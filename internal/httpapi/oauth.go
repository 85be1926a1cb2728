package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/widgetq/widgetq/internal/store"
)

// OAuthRoutes are the routes Kommo itself calls. They carry no bearer
// token: the install redirect is checked by its integration's state and
// the Kommo host allow-list on its referer, the revoke hook by Kommo's
// signature.
var OAuthRoutes = []string{"GET /oauth/callback", "GET /oauth/revoked"}

// maxQuery bounds a Kommo call's query string.
const maxQuery = 8 << 10

// integration finds the integration a Kommo call names by its client ID:
// the registry's, else the default one from the environment.
func (s *Server) integration(ctx context.Context, clientID string) (*store.Integration, error) {
	i, err := s.Store.IntegrationByClientID(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) && s.Default != nil && s.Default.ClientID != "" && hmac.Equal([]byte(s.Default.ClientID), []byte(clientID)) {
		return s.Default, nil
	}
	return i, err
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// oauthCallback is Kommo's install redirect: GET with code, referer (the
// account's host), client_id, and state or from_widget. Kommo waits 3 s
// and never calls again, so the answer comes as soon as the code's
// exchange is queued; a worker does the rest within the code's 20 minutes.
func (s *Server) oauthCallback(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.RawQuery) > maxQuery {
		writeProblem(w, http.StatusRequestURITooLong, "malformed", "query: too long")
		return
	}
	q := r.URL.Query()
	code, referer, clientID, state := q.Get("code"), q.Get("referer"), q.Get("client_id"), q.Get("state")
	for _, f := range [][2]string{{"code", code}, {"referer", referer}, {"client_id", clientID}} {
		if f[1] == "" {
			writeProblem(w, http.StatusBadRequest, "malformed", f[0]+": required")
			return
		}
	}
	log := s.logger().With("route", "oauth callback", "client_id", clip(clientID, 80))
	integ, err := s.integration(r.Context(), clientID)
	if errors.Is(err, store.ErrNotFound) {
		log.Warn("install redirect for an unknown client_id: ignored")
		writeProblem(w, http.StatusForbidden, "forbidden", "client_id: not an integration this deployment serves")
		return
	}
	if err != nil {
		log.Error("install redirect: read the registry", "error", err)
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "the integrations registry cannot be read now")
		return
	}
	log = log.With("integration", integ.Name)
	if integ.State != "" && !hmac.Equal([]byte(state), []byte(integ.State)) {
		log.Warn("install redirect with a state that does not match the integration's: ignored")
		writeProblem(w, http.StatusForbidden, "forbidden", "state: does not match the integration's")
		return
	}
	base, err := s.Store.Hosts().BaseOf(referer)
	if err != nil {
		log.Warn("install redirect from a host off the allow-list: ignored", "error", err)
		writeProblem(w, http.StatusForbidden, "forbidden", "referer: "+err.Error())
		return
	}
	out, err := s.Prod.Connect(r.Context(), integ.Name, base, code, s.now())
	if err != nil {
		log.Error("install redirect: could not queue the code's exchange", "base_url", base, "error", err)
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "the connection could not be queued; install the integration again")
		return
	}
	log.Info("install redirect: connection queued", "base_url", base, "outcome", string(out))
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "accepted", "integration": integ.Name})
}

// oauthRevoked is Kommo's revoke hook: GET with client_uuid, account_id
// and signature = hex HMAC-SHA256("{client_id}|{account_id}") keyed with
// the client secret. A verified call marks that integration's credentials
// of the account revoked: its pending tasks then fail token_revoked
// without a request.
func (s *Server) oauthRevoked(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.RawQuery) > maxQuery {
		writeProblem(w, http.StatusRequestURITooLong, "malformed", "query: too long")
		return
	}
	q := r.URL.Query()
	clientID, rawAccount, sig := q.Get("client_uuid"), q.Get("account_id"), q.Get("signature")
	account, err := strconv.ParseInt(rawAccount, 10, 64)
	if clientID == "" || err != nil || account <= 0 || sig == "" {
		writeProblem(w, http.StatusBadRequest, "malformed", "query: want client_uuid, a positive account_id and signature")
		return
	}
	log := s.logger().With("route", "oauth revoked", "client_id", clip(clientID, 80), "account", account)
	integ, err := s.integration(r.Context(), clientID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		log.Error("revoke hook: read the registry", "error", err)
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "the integrations registry cannot be read now")
		return
	}
	if integ == nil || !ValidRevokeSignature(integ.ClientSecret, clientID, rawAccount, sig) {
		log.Warn("revoke hook with a signature that does not verify: ignored")
		writeProblem(w, http.StatusForbidden, "forbidden", "signature: does not verify")
		return
	}
	had, err := s.Store.MarkRevoked(r.Context(), account, integ.Name)
	if err != nil {
		log.Error("revoke hook: could not mark the credentials revoked", "error", err)
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "could not record the revocation")
		return
	}
	log.Info("integration disconnected from the account", "integration", integ.Name, "had_credentials", had)
	w.WriteHeader(http.StatusNoContent)
}

// ValidRevokeSignature reports whether sig (hex) is Kommo's signature of a
// revoke hook call: HMAC-SHA256 of "{clientID}|{accountID}" keyed with the
// client secret. It compares in constant time.
func ValidRevokeSignature(secret, clientID, accountID, sig string) bool {
	got, err := hex.DecodeString(sig)
	if err != nil || secret == "" {
		return false
	}
	return hmac.Equal(got, RevokeSignature(secret, clientID, accountID))
}

// RevokeSignature is the signature Kommo sends with a revoke hook call.
func RevokeSignature(secret, clientID, accountID string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "%s|%s", clientID, accountID)
	return m.Sum(nil)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
