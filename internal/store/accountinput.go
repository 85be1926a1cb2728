package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/widgetq/widgetq/tasks"
)

// AccountInput is an account as an operator gives it: one line of an
// accounts file, or the body of the HTTP API's PUT /v1/accounts/{id}.
type AccountInput struct {
	AccountID    json.Number `json:"account_id"`
	Integration  string      `json:"integration"`
	BaseURL      string      `json:"base_url"`
	Subdomain    string      `json:"subdomain"`
	Domain       string      `json:"domain"`
	AccessToken  string      `json:"access_token"`
	RefreshToken string      `json:"refresh_token"`
	ExpiresAt    string      `json:"expires_at"`
}

// ParseAccountJSON reads one account: one JSON object, no unknown fields.
// With id > 0 the account ID comes from the caller (a URL path): the
// object may leave account_id out, or must give the same one. Errors name
// the field, never a token.
func ParseAccountJSON(line []byte, id int64) (Account, error) {
	var l AccountInput
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&l); err != nil {
		return Account{}, errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return Account{}, errors.New("more than one JSON value")
	}
	if id > 0 {
		if l.AccountID == "" {
			l.AccountID = json.Number(strconv.FormatInt(id, 10))
		} else if l.AccountID.String() != strconv.FormatInt(id, 10) {
			return Account{}, fmt.Errorf("account_id: %.30q differs from the account %d addressed", l.AccountID.String(), id)
		}
	}
	return l.ToAccount()
}

// ToAccount checks the input and names the first bad field; it never
// echoes a token.
func (l *AccountInput) ToAccount() (Account, error) {
	var acct Account
	id, err := strconv.ParseInt(l.AccountID.String(), 10, 64)
	if err != nil || id <= 0 {
		return acct, fmt.Errorf("account_id: want a positive integer, got %.30q", l.AccountID.String())
	}
	acct.ID = id
	if l.Integration != "" && !tasks.ValidIntegration(l.Integration) {
		return acct, fmt.Errorf("integration: %.50q is not an integration name (1-40 lower-case letters, digits, '-', '_')", l.Integration)
	}
	acct.Integration = l.Integration
	acct.BaseURL = l.BaseURL
	if acct.BaseURL == "" {
		if l.Subdomain == "" {
			return acct, errors.New("base_url or subdomain: required")
		}
		if strings.ContainsAny(l.Subdomain, "./:?#@ ") {
			return acct, fmt.Errorf("subdomain: %.40q is not a subdomain", l.Subdomain)
		}
		domain := l.Domain
		if domain == "" {
			domain = "kommo.com"
		}
		if strings.ContainsAny(domain, "/:?#@ ") {
			return acct, fmt.Errorf("domain: %.40q is not a domain", domain)
		}
		acct.BaseURL = "https://" + l.Subdomain + "." + domain
	}
	acct.AccessToken = l.AccessToken
	acct.RefreshToken = l.RefreshToken
	if l.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339, l.ExpiresAt)
		if err != nil {
			return acct, fmt.Errorf("expires_at: want RFC 3339 (2026-12-31T23:59:59Z), got %.40q", l.ExpiresAt)
		}
		acct.ExpiresAt = t
	}
	if err := acct.Validate(); err != nil {
		return acct, err
	}
	return acct, nil
}
