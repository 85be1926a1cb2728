package tasks

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
)

// TypeVerifyWidget asks Kommo whether a recorded install still stands:
// the widget still active in the account, its non-secret settings as
// installed. `enqueue verify` queues it; a worker runs it within the
// account's rate budget and records drift as a failed result.
const TypeVerifyWidget = "widget:verify"

// VerifyWidgetPayload names the install to check: the enqueueing whose
// result said installed (a result changed since is left alone).
type VerifyWidgetPayload struct {
	AccountID   int64  `json:"account_id"`
	WidgetCode  string `json:"widget_code"`
	EnqueueID   string `json:"enqueue_id"`
	Integration string `json:"integration,omitempty"`
}

// Validate checks the payload, naming the first bad field.
func (p *VerifyWidgetPayload) Validate() error {
	if err := validateAccount(p.AccountID); err != nil {
		return err
	}
	if err := validateCode(p.WidgetCode); err != nil {
		return err
	}
	if p.EnqueueID == "" || len(p.EnqueueID) > 100 {
		return &FieldError{"enqueue_id", "required (at most 100 characters)"}
	}
	return validateIntegration(p.Integration)
}

// VerifyTaskID is the task ID of an install's check: one at a time.
func VerifyTaskID(accountID int64, code string) string {
	return "verify:" + strconv.FormatInt(accountID, 10) + ":" + code
}

// NewVerifyWidgetTask validates p and returns its task: a few retries, kept
// an hour once done (a check run again later is a new one).
func NewVerifyWidgetTask(p VerifyWidgetPayload, opts ...asynq.Option) (*asynq.Task, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode verify payload: %w", err)
	}
	o := append(defaults(VerifyTaskID(p.AccountID, p.WidgetCode)), asynq.MaxRetry(5), asynq.Retention(time.Hour))
	return asynq.NewTask(TypeVerifyWidget, b, append(o, opts...)...), nil
}

// DecodeVerifyWidget decodes and validates a verify task's payload.
func DecodeVerifyWidget(payload []byte) (VerifyWidgetPayload, error) {
	var p VerifyWidgetPayload
	if err := decodeStrict(payload, &p); err != nil {
		return p, err
	}
	return p, p.Validate()
}
