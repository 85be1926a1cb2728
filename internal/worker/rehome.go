package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/widgetq/widgetq/internal/kommo"
)

// mayHaveMoved reports whether a failure at the stored host may mean the
// account's subdomain changed (the PHP client asks then): a 401 or a
// refused refresh, a redirect, or a 404 that is not Kommo's problem+json
// (an unknown account host — not an unknown widget).
func mayHaveMoved(err error) bool {
	var ke *kommo.Error
	if !errors.As(err, &ke) {
		return false
	}
	switch ke.Class {
	case kommo.ClassUnauthorized, kommo.ClassTokenRevoked, kommo.ClassRedirected:
		return true
	case kommo.ClassNotFound:
		return !strings.Contains(ke.ContentType, "json")
	}
	return false
}

var subdomainRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
var domainRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)

// rebase is an account's API base after its subdomain became sub (domain
// "kommo.com", "amocrm.ru", as Kommo answers): the host's first label
// replaced — or, for a local sandbox serving accounts under a path prefix,
// the path's last segment. The result still goes through the host
// allow-list before it is stored.
func rebase(base, sub, domain string) (string, error) {
	sub, domain = strings.ToLower(sub), strings.ToLower(strings.TrimSuffix(domain, "."))
	if !subdomainRE.MatchString(sub) {
		return "", fmt.Errorf("subdomain %.70q is not a DNS label", sub)
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("base URL %.80q is not a URL", base)
	}
	if p := strings.TrimRight(u.Path, "/"); p != "" {
		i := strings.LastIndex(p, "/")
		u.Path, u.RawPath = p[:i+1]+sub, ""
		return u.String(), nil
	}
	if !domainRE.MatchString(domain) {
		return "", fmt.Errorf("domain %.70q is not a domain", domain)
	}
	h := sub + "." + domain
	if port := u.Port(); port != "" {
		h += ":" + port
	}
	u.Host = h
	return strings.TrimRight(u.String(), "/"), nil
}

// rehome asks Kommo, once per attempt, whether the account's subdomain
// changed after err at its stored host: the access token's api_domain
// (allow-listed) answers /oauth2/account/current/subdomain for the
// refresh token. A new subdomain that passes the allow-list is stored as
// the account's base URL (for this integration's credentials), and the
// caller tries once more. It reports whether it moved the account.
func (h *Handler) rehome(ctx context.Context, a *attempt, err error) bool {
	if a.rehomed || a.acct == nil || !mayHaveMoved(err) {
		return false
	}
	a.rehomed = true
	cur, gerr := h.st.GetAccount(ctx, a.account, a.integ) // a refresh may have stored a newer pair
	if gerr != nil {
		return false
	}
	claims, ok := kommo.ParseClaims(cur.AccessToken)
	if !ok || claims.APIDomain == "" || cur.RefreshToken == "" {
		return false // issued before api_domain existed: nothing to ask
	}
	log := h.cfg.Logger.With("account", a.account, "integration", a.integ, "widget", a.code)
	apiBase, herr := h.cfg.Hosts.BaseOf(claims.APIDomain)
	if herr != nil {
		log.Warn("the token's api_domain is not an allowed Kommo host: not asked", "error", herr)
		return false
	}
	hc := h.kommoHTTP(a, h.cfg.MaxWait)
	hc.Timeout = h.cfg.RequestTimeout
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, apiBase+"/oauth2/account/current/subdomain", nil)
	req.Header.Set("X-Refresh-Token", cur.RefreshToken)
	req.Header.Set("User-Agent", h.cfg.UserAgent)
	resp, rerr := hc.Do(req)
	if rerr != nil {
		log.Warn("could not ask Kommo for the account's current subdomain", "error", kommo.Redact(rerr.Error()))
		return false
	}
	defer resp.Body.Close()
	var ans struct {
		ID        int64  `json:"id"`
		Subdomain string `json:"subdomain"`
		Domain    string `json:"domain"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &ans) != nil || ans.ID != a.account {
		log.Warn("Kommo did not tell the account's current subdomain", "status", resp.StatusCode)
		return false
	}
	nb, berr := rebase(cur.BaseURL, ans.Subdomain, ans.Domain)
	if berr != nil || nb == cur.BaseURL {
		return false
	}
	if _, merr := h.st.MoveAccount(ctx, a.account, a.integ, nb); merr != nil {
		log.Warn("the account's new host is refused: base URL kept", "new_base_url", nb, "error", merr)
		return false
	}
	log.Info("the account's subdomain changed: base URL updated", "old_base_url", cur.BaseURL, "new_base_url", nb)
	moved := *cur
	moved.BaseURL = nb
	a.acct = &moved
	return true
}
