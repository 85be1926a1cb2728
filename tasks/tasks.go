// Package tasks is widgetq's wire contract: the task type names, the
// payloads, and constructors that validate a payload and give the task its
// defaults. A marketplace backend imports this package alone (it imports
// nothing internal) to enqueue installs with its own asynq client.
//
// Every task has the ID "{verb}:{account}:{code}", so the same install (or
// uninstall) of a widget into an account is never queued twice: asynq
// answers ErrTaskIDConflict while one is pending, running, retrying,
// archived, or completed within its retention.
package tasks

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
)

// Task type names. They are a wire contract: workers route on them.
const (
	TypeInstallWidget   = "widget:install"
	TypeUninstallWidget = "widget:uninstall"
)

// Defaults given to every task unless an option overrides them.
const (
	DefaultQueue     = "widgets"
	DefaultMaxRetry  = 12
	DefaultTimeout   = 2 * time.Minute
	DefaultRetention = 24 * time.Hour
	// MaxSettingsBytes bounds a settings object.
	MaxSettingsBytes = 64 << 10
	// sealedPrefix starts a sealed value (internal/seal's format).
	sealedPrefix = "wqs1."
)

// InstallWidgetPayload installs a widget into an account.
type InstallWidgetPayload struct {
	// AccountID is the Kommo account's ID, as stored with its credentials.
	AccountID int64 `json:"account_id"`
	// WidgetCode is the widget's code, e.g. "amo_asterisk".
	WidgetCode string `json:"widget_code"`
	// Settings is the install body: a flat JSON object keyed by the
	// widget's settings_template keys. Empty means {}.
	Settings json.RawMessage `json:"settings,omitempty"`
	// SealedSettings is Settings encrypted with widgetq's secret key
	// (WIDGETQ_SECRET_KEY), so that `pass` values and `users_lp` passwords
	// never rest in Redis in plaintext; Settings is then empty. widgetq's
	// producer fills it when it has a key; a worker with the key opens it.
	SealedSettings string `json:"sealed_settings,omitempty"`
	// EnqueueID tells one enqueueing of this task from another; the
	// constructor sets it. Results record it, so that marking a task
	// queued never overwrites what a worker already recorded for it.
	EnqueueID string `json:"enqueue_id,omitempty"`
	// Integration names the OAuth integration whose credentials install
	// the widget; empty means the integration registered as the widget's
	// owner, else "default".
	Integration string `json:"integration,omitempty"`
	// BatchID is the batch the task was enqueued in (producer.InstallMany,
	// a bulk run, an HTTP array), whose counts its result moves.
	BatchID string `json:"batch_id,omitempty"`
}

// UninstallWidgetPayload removes a widget from an account.
type UninstallWidgetPayload struct {
	AccountID   int64  `json:"account_id"`
	WidgetCode  string `json:"widget_code"`
	EnqueueID   string `json:"enqueue_id,omitempty"`
	Integration string `json:"integration,omitempty"`
	BatchID     string `json:"batch_id,omitempty"`
}

// FieldError is a payload field that is not acceptable.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// ErrInvalidPayload is matched (errors.Is) by every validation error.
var ErrInvalidPayload = errors.New("invalid payload")

// Is lets errors.Is(err, ErrInvalidPayload) match a *FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidPayload }

// The names below are checked byte by byte, not with regexp: every task
// a worker runs and every line of a bulk file checks three of them.
// names_test.go holds each to its pattern.

// ValidWidgetCode reports whether code is a well-formed widget code: 1-100
// letters, digits, '_', '-' or '.', starting with a letter or digit (so
// never "." or "..": it becomes a path segment of Kommo's API).
func ValidWidgetCode(code string) bool {
	if len(code) == 0 || len(code) > 100 || !isAlnum(code[0]) {
		return false
	}
	for i := 1; i < len(code); i++ {
		if c := code[i]; !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// ValidIntegration reports whether name is a well-formed integration name:
// 1-40 lower-case letters, digits, '-' or '_', starting with a letter or
// digit.
func ValidIntegration(name string) bool {
	if len(name) == 0 || len(name) > 40 || !isLowerAlnum(name[0]) {
		return false
	}
	for i := 1; i < len(name); i++ {
		if c := name[i]; !isLowerAlnum(c) && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// ValidBatchID reports whether id is a batch ID as NewBatchID makes them:
// "b_" and 16 lower-case hex digits.
func ValidBatchID(id string) bool {
	if len(id) != 18 || id[:2] != "b_" {
		return false
	}
	for i := 2; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// NewBatchID returns a fresh batch ID: "b_" and 16 hex digits.
func NewBatchID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "b_" + hex.EncodeToString(b)
}

func validateBatch(id string) error {
	if id != "" && !ValidBatchID(id) {
		return &FieldError{"batch_id", fmt.Sprintf("%.40q is not a batch ID (b_ and 16 hex digits)", id)}
	}
	return nil
}

func validateIntegration(name string) error {
	if name != "" && !ValidIntegration(name) {
		return &FieldError{"integration", fmt.Sprintf("%.50q is not an integration name (1-40 lower-case letters, digits, '-', '_')", name)}
	}
	return nil
}

func validateAccount(id int64) error {
	if id <= 0 {
		return &FieldError{"account_id", fmt.Sprintf("must be a positive integer, got %d", id)}
	}
	return nil
}

func validateCode(code string) error {
	switch {
	case code == "":
		return &FieldError{"widget_code", "required"}
	case !utf8.ValidString(code):
		return &FieldError{"widget_code", "not valid UTF-8"}
	case !ValidWidgetCode(code):
		return &FieldError{"widget_code", fmt.Sprintf("%.40q is not a widget code (1-100 letters, digits, '_', '-', '.')", code)}
	}
	return nil
}

// Validate checks the payload: a positive account ID, a well-formed widget
// code, and settings that are a JSON object of at most MaxSettingsBytes.
func (p *InstallWidgetPayload) Validate() error { return p.validate(true) }

// validate is Validate; checkJSON false skips checking that the settings
// are well-formed JSON, for settings a JSON decoder produced.
func (p *InstallWidgetPayload) validate(checkJSON bool) error {
	if err := validateAccount(p.AccountID); err != nil {
		return err
	}
	if err := validateCode(p.WidgetCode); err != nil {
		return err
	}
	if err := validateIntegration(p.Integration); err != nil {
		return err
	}
	if err := validateBatch(p.BatchID); err != nil {
		return err
	}
	s := bytes.TrimSpace(p.Settings)
	if p.SealedSettings != "" {
		switch {
		case len(s) > 0 && !bytes.Equal(s, []byte("null")):
			return &FieldError{"settings", "given together with sealed_settings; give one"}
		case !strings.HasPrefix(p.SealedSettings, sealedPrefix):
			return &FieldError{"sealed_settings", "not a value sealed by widgetq"}
		case len(p.SealedSettings) > 2*MaxSettingsBytes:
			return &FieldError{"sealed_settings", fmt.Sprintf("%d bytes, more than the %d allowed", len(p.SealedSettings), 2*MaxSettingsBytes)}
		}
		return nil
	}
	switch {
	case len(s) == 0 || bytes.Equal(s, []byte("null")):
		return nil
	case len(s) > MaxSettingsBytes:
		return &FieldError{"settings", fmt.Sprintf("%d bytes, more than the %d allowed", len(s), MaxSettingsBytes)}
	case !utf8.Valid(s):
		return &FieldError{"settings", "not valid UTF-8"}
	case s[0] != '{' || checkJSON && !json.Valid(s):
		return &FieldError{"settings", "must be a JSON object"}
	}
	return nil
}

// Validate checks the payload: a positive account ID and a well-formed code.
func (p *UninstallWidgetPayload) Validate() error {
	if err := validateAccount(p.AccountID); err != nil {
		return err
	}
	if err := validateCode(p.WidgetCode); err != nil {
		return err
	}
	if err := validateBatch(p.BatchID); err != nil {
		return err
	}
	return validateIntegration(p.Integration)
}

// InstallTaskID is the task ID of an account's install of a widget.
func InstallTaskID(accountID int64, code string) string {
	return "install:" + strconv.FormatInt(accountID, 10) + ":" + code
}

// UninstallTaskID is the task ID of an account's uninstall of a widget.
func UninstallTaskID(accountID int64, code string) string {
	return "uninstall:" + strconv.FormatInt(accountID, 10) + ":" + code
}

// defaults are the options every task starts with; the caller's come after
// and win.
func defaults(id string) []asynq.Option {
	return []asynq.Option{
		asynq.Queue(DefaultQueue),
		asynq.MaxRetry(DefaultMaxRetry),
		asynq.Timeout(DefaultTimeout),
		asynq.Retention(DefaultRetention),
		asynq.TaskID(id),
	}
}

// NewEnqueueID returns a fresh enqueue ID (the constructors set one when
// the payload has none).
func NewEnqueueID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewInstallWidgetTask validates p and returns its task with the defaults
// (queue, retries, timeout, retention, task ID); opts override them.
func NewInstallWidgetTask(p InstallWidgetPayload, opts ...asynq.Option) (*asynq.Task, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if s := bytes.TrimSpace(p.Settings); p.SealedSettings == "" && (len(s) == 0 || bytes.Equal(s, []byte("null"))) {
		p.Settings = json.RawMessage("{}")
	}
	// json.Marshal compacts the settings (a RawMessage) on its own.
	if p.EnqueueID == "" {
		p.EnqueueID = NewEnqueueID()
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode install payload: %w", err)
	}
	return asynq.NewTask(TypeInstallWidget, b, append(defaults(InstallTaskID(p.AccountID, p.WidgetCode)), opts...)...), nil
}

// NewUninstallWidgetTask validates p and returns its task with the
// defaults; opts override them.
func NewUninstallWidgetTask(p UninstallWidgetPayload, opts ...asynq.Option) (*asynq.Task, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.EnqueueID == "" {
		p.EnqueueID = NewEnqueueID()
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode uninstall payload: %w", err)
	}
	return asynq.NewTask(TypeUninstallWidget, b, append(defaults(UninstallTaskID(p.AccountID, p.WidgetCode)), opts...)...), nil
}

// DecodeInstallWidget decodes and validates a task's payload. Unknown
// fields are refused: a payload from another program is either ours or
// invalid. The error matches ErrInvalidPayload.
func DecodeInstallWidget(payload []byte) (InstallWidgetPayload, error) {
	var p InstallWidgetPayload
	if !utf8.Valid(payload) {
		return p, &FieldError{"payload", "not valid UTF-8"}
	}
	if !decodeInstallFast(payload, &p) {
		p = InstallWidgetPayload{}
		if err := decodeStrict(payload, &p); err != nil {
			return p, err
		}
	}
	// Either decoder checked that the settings are JSON.
	return p, p.validate(false)
}

// DecodeUninstallWidget decodes and validates a task's payload.
func DecodeUninstallWidget(payload []byte) (UninstallWidgetPayload, error) {
	var p UninstallWidgetPayload
	if err := decodeStrict(payload, &p); err != nil {
		return p, err
	}
	return p, p.Validate()
}

func decodeStrict(payload []byte, v any) error {
	if !utf8.Valid(payload) {
		return &FieldError{"payload", "not valid UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &FieldError{"payload", "not a widgetq payload: " + describeJSONError(err)}
	}
	if dec.More() {
		return &FieldError{"payload", "data after the JSON object"}
	}
	return nil
}

func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %s: want %s, got %s", te.Field, te.Type, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}

// ShardQueue is the queue of an account's tasks when queue base is split
// into n shards (n <= 1: base itself). An account's tasks always land in
// the same shard, so task IDs still keep an install from being queued
// twice, and on a Redis Cluster the shards' keys spread over the nodes.
// Producers and workers must agree on n; changing it strands what the
// old shards hold until a worker serving them drains them.
func ShardQueue(base string, account int64, n int) string {
	if n <= 1 {
		return base
	}
	s := account % int64(n)
	if s < 0 {
		s = -s
	}
	return base + "-" + strconv.FormatInt(s, 10)
}

// ShardQueues lists the n shard queues of base (base itself when n <= 1).
func ShardQueues(base string, n int) []string {
	if n <= 1 {
		return []string{base}
	}
	out := make([]string, n)
	for i := range out {
		out[i] = base + "-" + strconv.Itoa(i)
	}
	return out
}
