package kommo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Widget is Kommo's widget model. Decoding accepts every shape Kommo and its
// PHP backend are known to send (see shared/kommo-api.md) and ignores
// unknown fields.
type Widget struct {
	ID                int                `json:"id"`
	Code              string             `json:"code"`
	Version           Version            `json:"version"`
	Rating            Rating             `json:"rating"`
	SettingsTemplate  SettingsTemplate   `json:"settings_template"`
	IsLeadSource      Bool               `json:"is_lead_source"`
	IsWorkWithDP      Bool               `json:"is_work_with_dp"`
	IsCRMTemplate     Bool               `json:"is_crm_template"`
	IsActiveInAccount Bool               `json:"is_active_in_account"`
	ClientUUID        *string            `json:"client_uuid"`
	PipelineID        *int               `json:"pipeline_id"`
	Settings          ReturnedSettings   `json:"settings"`
	Links             map[string]halLink `json:"_links,omitempty"`
}

type halLink struct {
	Href string `json:"href"`
}

// Version is a widget's version. Kommo sends a string ("1.0.3"); some
// answers carry a number. Both decode to the string.
type Version string

// UnmarshalJSON accepts a string, a number or null.
func (v *Version) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*v = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("version: %w", err)
		}
		*v = Version(s)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("version: want a string or a number, got %.40s", b)
		}
		*v = Version(n.String())
	}
	return nil
}

// Rating is a widget's rating. Kommo documents it as "2,8" (a string with a
// decimal comma); other answers send 2.8 or null. Valid is false when no
// rating was sent.
type Rating struct {
	Value float64
	Valid bool
}

// UnmarshalJSON accepts "2,8", "2.8", 2.8, "" and null.
func (r *Rating) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*r = Rating{}
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("rating: %w", err)
		}
		s = strings.TrimSpace(s)
		if s == "" {
			return nil
		}
		s = strings.Replace(s, ",", ".", 1)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("rating: want a number, got %.40q", s)
	}
	*r = Rating{Value: f, Valid: true}
	return nil
}

// MarshalJSON writes the number, or null when not Valid.
func (r Rating) MarshalJSON() ([]byte, error) {
	if !r.Valid {
		return []byte("null"), nil
	}
	return json.Marshal(r.Value)
}

// Bool decodes JSON booleans and the other truthy shapes PHP backends send:
// 0/1, "0"/"1", "Y"/"N", "true"/"false", null (false).
type Bool bool

// UnmarshalJSON accepts true, false, null, 0, 1 and their string forms.
func (v *Bool) UnmarshalJSON(b []byte) error {
	s := strings.ToLower(strings.Trim(string(bytes.TrimSpace(b)), `"`))
	switch s {
	case "true", "1", "y", "yes", "on":
		*v = true
	case "false", "0", "n", "no", "off", "", "null":
		*v = false
	default:
		return fmt.Errorf("want a boolean, got %.40s", b)
	}
	return nil
}

// ReturnedSettings are the settings Kommo returns with a widget: only to the
// integration that owns it, as an object; a PHP backend sends an empty
// array [] for none, and it may be null or absent.
type ReturnedSettings map[string]json.RawMessage

// UnmarshalJSON accepts an object, an array (empty or not: an array has no
// keys, so it decodes to no settings), and null.
func (s *ReturnedSettings) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")), len(b) > 0 && b[0] == '[':
		*s = ReturnedSettings{}
		return nil
	}
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("settings: want an object, got %.40s", b)
	}
	*s = m
	return nil
}

// SettingType is the type of one settings_template entry.
type SettingType string

// The settings types Kommo defines.
const (
	SettingText    SettingType = "text"
	SettingPass    SettingType = "pass"
	SettingUsers   SettingType = "users"
	SettingUsersLP SettingType = "users_lp"
	SettingCustom  SettingType = "custom"
)

// SettingTemplate describes one key of a widget's settings.
type SettingTemplate struct {
	Key        string      `json:"key"`
	Name       string      `json:"name"`
	Type       SettingType `json:"type"`
	IsRequired Bool        `json:"is_required"`
}

// SettingsTemplate is a widget's settings_template: a list of keys. Kommo
// sends an array; a PHP backend may send an object keyed by the setting's
// key (whose entries may then lack "key"), or [] / null for none.
type SettingsTemplate []SettingTemplate

// UnmarshalJSON accepts an array, an object keyed by setting key, and null.
func (t *SettingsTemplate) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*t = nil
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		var list []SettingTemplate
		if err := json.Unmarshal(b, &list); err != nil {
			return fmt.Errorf("settings_template: %w", err)
		}
		*t = list
		return nil
	}
	// An object keyed by setting key; keep the wire order.
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("settings_template: want an array or an object, got %.40s", b)
	}
	var list []SettingTemplate
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("settings_template: %w", err)
		}
		key, _ := tok.(string)
		var st SettingTemplate
		if err := dec.Decode(&st); err != nil {
			return fmt.Errorf("settings_template.%s: %w", key, err)
		}
		if st.Key == "" {
			st.Key = key
		}
		list = append(list, st)
	}
	*t = list
	return nil
}

// Account is the part of GET /api/v4/account widgetq uses.
type Account struct {
	ID            int    `json:"id"`
	Name          string `json:"name"`
	Subdomain     string `json:"subdomain"`
	CurrentUserID int    `json:"current_user_id"`
	Country       string `json:"country"`
	Currency      string `json:"currency"`
}
