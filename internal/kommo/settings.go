package kommo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// SettingsProblem is one thing wrong with a settings object: where, and
// what. It never holds a value.
type SettingsProblem struct {
	// Path is the key path, e.g. "phones.504141" or "operators.7.password";
	// empty for the object as a whole.
	Path string `json:"path"`
	// Problem says what is wrong, e.g. "required" or "want a string, got number".
	Problem string `json:"problem"`
}

func (p SettingsProblem) String() string {
	if p.Path == "" {
		return p.Problem
	}
	return p.Path + ": " + p.Problem
}

// SettingsError lists every problem found in a settings object at once.
type SettingsError struct {
	Widget   string
	Problems []SettingsProblem
}

func (e *SettingsError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	w := ""
	if e.Widget != "" {
		w = " for widget " + e.Widget
	}
	return fmt.Sprintf("invalid settings%s: %s", w, strings.Join(parts, "; "))
}

// ValidateSettings checks a settings object against a widget's
// settings_template and reports every problem at once: not an object,
// duplicate or unknown keys, missing required keys, values of the wrong
// type, malformed users and users_lp entries. Problems name key paths,
// never values. It returns nil or a *SettingsError.
func ValidateSettings(tmpl SettingsTemplate, settings []byte) error {
	var problems []SettingsProblem
	add := func(path, format string, args ...any) {
		problems = append(problems, SettingsProblem{Path: path, Problem: fmt.Sprintf(format, args...)})
	}
	members, err := objectMembers(settings)
	if err != nil {
		add("", "%v", err)
		return &SettingsError{Problems: problems}
	}
	byKey := make(map[string]json.RawMessage, len(members))
	for _, m := range members {
		if _, dup := byKey[m.key]; dup {
			add(m.key, "duplicate key")
			continue
		}
		byKey[m.key] = m.value
	}
	known := make(map[string]bool, len(tmpl))
	for _, st := range tmpl {
		known[st.Key] = true
		v, ok := byKey[st.Key]
		if !ok || isNull(v) {
			if bool(st.IsRequired) {
				add(st.Key, "required")
			}
			continue
		}
		validateValue(st, v, add)
	}
	var unknown []string
	for k := range byKey {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		add(k, "not in the widget's settings_template")
	}
	if len(problems) == 0 {
		return nil
	}
	return &SettingsError{Problems: problems}
}

func validateValue(st SettingTemplate, v json.RawMessage, add func(path, format string, args ...any)) {
	switch st.Type {
	case SettingText, SettingPass:
		s, ok := stringValue(v)
		switch {
		case !ok:
			add(st.Key, "want a string, got %s", jsonKind(v))
		case bool(st.IsRequired) && strings.TrimSpace(s) == "":
			add(st.Key, "required, got an empty string")
		}
	case SettingUsers:
		entries, err := objectMembers(v)
		if err != nil {
			add(st.Key, "want an object of user ID → extension, got %s", jsonKind(v))
			return
		}
		if bool(st.IsRequired) && len(entries) == 0 {
			add(st.Key, "required, got an empty object")
		}
		for _, e := range entries {
			path := st.Key + "." + e.key
			if !isUserID(e.key) {
				add(path, "key must be a user ID (a positive integer)")
			}
			if _, ok := stringValue(e.value); !ok {
				add(path, "want an extension number as a string, got %s", jsonKind(e.value))
			}
		}
	case SettingUsersLP:
		entries, err := objectMembers(v)
		if err != nil {
			add(st.Key, "want an object of user ID → {login, password}, got %s", jsonKind(v))
			return
		}
		if bool(st.IsRequired) && len(entries) == 0 {
			add(st.Key, "required, got an empty object")
		}
		for _, e := range entries {
			path := st.Key + "." + e.key
			if !isUserID(e.key) {
				add(path, "key must be a user ID (a positive integer)")
			}
			fields, err := objectMembers(e.value)
			if err != nil {
				add(path, "want an object {login, password}, got %s", jsonKind(e.value))
				continue
			}
			seen := map[string]bool{}
			for _, f := range fields {
				switch f.key {
				case "login", "password":
					seen[f.key] = true
					if _, ok := stringValue(f.value); !ok {
						add(path+"."+f.key, "want a string, got %s", jsonKind(f.value))
					}
				default:
					add(path+"."+f.key, "unknown field (want login and password)")
				}
			}
			for _, need := range []string{"login", "password"} {
				if !seen[need] {
					add(path+"."+need, "required")
				}
			}
		}
	default:
		// custom, and types Kommo may add later: any JSON value the widget
		// defines.
	}
}

// SecretValues returns the secrets inside a settings object: the values of
// pass keys and the passwords of users_lp entries. Give them to the client
// (WithSecrets) and to anything that may echo the settings.
func SecretValues(tmpl SettingsTemplate, settings []byte) []string {
	var out []string
	var obj map[string]json.RawMessage
	if json.Unmarshal(settings, &obj) != nil {
		return nil
	}
	for _, st := range tmpl {
		v, ok := obj[st.Key]
		if !ok {
			continue
		}
		switch st.Type {
		case SettingPass:
			if s, ok := stringValue(v); ok {
				out = append(out, s)
			}
		case SettingUsersLP:
			var entries map[string]struct {
				Password string `json:"password"`
			}
			if json.Unmarshal(v, &entries) == nil {
				for _, e := range entries {
					if e.Password != "" {
						out = append(out, e.Password)
					}
				}
			}
		}
	}
	return out
}

// RedactSettings returns a copy of a settings object with pass values and
// users_lp passwords replaced by Redacted, for showing to a person. Input
// that is not a JSON object comes back as null.
func RedactSettings(tmpl SettingsTemplate, settings []byte) json.RawMessage {
	var obj map[string]json.RawMessage
	if json.Unmarshal(settings, &obj) != nil || obj == nil {
		return json.RawMessage("null")
	}
	red, _ := json.Marshal(Redacted)
	for _, st := range tmpl {
		v, ok := obj[st.Key]
		if !ok || isNull(v) {
			continue
		}
		switch st.Type {
		case SettingPass:
			obj[st.Key] = red
		case SettingUsersLP:
			var entries map[string]map[string]json.RawMessage
			if json.Unmarshal(v, &entries) != nil {
				obj[st.Key] = red
				continue
			}
			for _, e := range entries {
				if _, ok := e["password"]; ok {
					e["password"] = red
				}
			}
			obj[st.Key], _ = json.Marshal(entries)
		}
	}
	out, _ := json.Marshal(obj)
	return out
}

type member struct {
	key   string
	value json.RawMessage
}

// objectMembers returns the members of a JSON object in wire order,
// duplicates included, or an error naming what the value is instead.
func objectMembers(b []byte) ([]member, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("want a JSON object, got nothing")
	}
	if b[0] != '{' {
		if !json.Valid(b) {
			return nil, fmt.Errorf("want a JSON object, got malformed JSON")
		}
		return nil, fmt.Errorf("want a JSON object, got %s", jsonKind(b))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("want a JSON object, got malformed JSON")
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("malformed JSON")
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("malformed JSON")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("malformed JSON")
		}
		out = append(out, member{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("malformed JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("malformed JSON: data after the object")
	}
	return out, nil
}

func stringValue(v json.RawMessage) (string, bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// jsonKind names the kind of a JSON value, never the value itself.
func jsonKind(v []byte) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	if v[0] == '-' || (v[0] >= '0' && v[0] <= '9') {
		return "a number"
	}
	return "malformed JSON"
}

func isUserID(s string) bool {
	n, err := strconv.ParseUint(s, 10, 63)
	return err == nil && n > 0 && strconv.FormatUint(n, 10) == s
}

// SettingsDigest fingerprints the settings' non-secret values, key by key:
// every top-level key the template knows that is neither a pass nor a
// users_lp (whose passwords it holds), as the first 16 bytes of SHA-256 of
// its compact JSON, in hex. widgetq keeps it with an install's result, so a
// later check can tell whether the settings changed in Kommo without
// keeping a value.
func SettingsDigest(tmpl SettingsTemplate, settings []byte) map[string]string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(settings, &obj) != nil {
		return nil
	}
	out := map[string]string{}
	for _, st := range tmpl {
		v, ok := obj[st.Key]
		if !ok || st.Type == SettingPass || st.Type == SettingUsersLP {
			continue
		}
		out[st.Key] = digestValue(v)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// DigestValue is SettingsDigest's fingerprint of one value.
func DigestValue(v json.RawMessage) string { return digestValue(v) }

func digestValue(v json.RawMessage) string {
	var buf bytes.Buffer
	if json.Compact(&buf, v) != nil {
		buf.Reset()
		buf.Write(v)
	}
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:16])
}
