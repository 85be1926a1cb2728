package tasks

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// TypeConnectAccount finishes an account's OAuth install: widgetq's own
// `enqueue serve` enqueues it from Kommo's install redirect, and a worker
// exchanges the code, stores the credentials and enqueues the
// integration's install-on-connect widgets.
const TypeConnectAccount = "account:connect"

// CodeLifetime is how long Kommo's authorization code can be exchanged.
const CodeLifetime = 20 * time.Minute

// ConnectAccountPayload is an authorization code to exchange.
type ConnectAccountPayload struct {
	// Integration is the registered integration the code was issued to.
	Integration string `json:"integration"`
	// BaseURL is the account's API base, from the redirect's referer
	// (checked against the Kommo host allow-list before it is enqueued).
	BaseURL string `json:"base_url"`
	// Code is the authorization code; SealedCode is it sealed with
	// widgetq's secret key, when the producer has one (Code is then
	// empty).
	Code       string `json:"code,omitempty"`
	SealedCode string `json:"sealed_code,omitempty"`
	// ReceivedAt is when the redirect arrived: the code dies
	// CodeLifetime later.
	ReceivedAt time.Time `json:"received_at"`
}

// Validate checks the payload's fields, naming the first bad one (never
// echoing the code).
func (p *ConnectAccountPayload) Validate() error {
	switch {
	case !ValidIntegration(p.Integration):
		return &FieldError{"integration", fmt.Sprintf("%.50q is not an integration name", p.Integration)}
	case p.Code == "" && p.SealedCode == "":
		return &FieldError{"code", "required"}
	case p.Code != "" && p.SealedCode != "":
		return &FieldError{"code", "given together with sealed_code; give one"}
	case len(p.Code) > 2000 || len(p.SealedCode) > 4000:
		return &FieldError{"code", "too long"}
	case p.SealedCode != "" && !strings.HasPrefix(p.SealedCode, sealedPrefix):
		return &FieldError{"sealed_code", "not a value sealed by widgetq"}
	case p.ReceivedAt.IsZero():
		return &FieldError{"received_at", "required"}
	}
	if u, err := url.Parse(p.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return &FieldError{"base_url", fmt.Sprintf("%.80q is not an account's API base", p.BaseURL)}
	}
	return nil
}

// ConnectTaskID is the task ID of one code's exchange: a redirect that
// arrives twice is queued once.
func ConnectTaskID(integration, code string) string {
	h := sha256.Sum256([]byte(integration + "\x00" + code))
	return "connect:" + integration + ":" + hex.EncodeToString(h[:12])
}

// NewConnectAccountTask validates p and returns its task: queued like an
// install, retried until the code dies (its deadline), with the ID
// ConnectTaskID of the code (the caller passes the plain code when p
// carries it sealed).
func NewConnectAccountTask(p ConnectAccountPayload, code string, opts ...asynq.Option) (*asynq.Task, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode connect payload: %w", err)
	}
	o := append(defaults(ConnectTaskID(p.Integration, code)), asynq.Deadline(p.ReceivedAt.Add(CodeLifetime)), asynq.Timeout(time.Minute))
	return asynq.NewTask(TypeConnectAccount, b, append(o, opts...)...), nil
}

// DecodeConnectAccount decodes and validates a connect task's payload.
func DecodeConnectAccount(payload []byte) (ConnectAccountPayload, error) {
	var p ConnectAccountPayload
	if err := decodeStrict(payload, &p); err != nil {
		return p, err
	}
	return p, p.Validate()
}
