// Package payloadjson reads an install payload in the compact form
// widgetq's producers write — compact JSON, the payload's own field names,
// an integer account ID, strings without escapes, settings an object —
// without encoding/json's reflection and Decoder. It reports false for
// anything else: its callers then decode with encoding/json, which stays
// the authority (their fuzz tests hold this package to it).
package payloadjson

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Install is an install payload's fields as they were written.
type Install struct {
	AccountID      int64
	WidgetCode     string
	Settings       []byte
	SealedSettings string
	EnqueueID      string
	Integration    string
	BatchID        string
}

// Fields of Install, as Decode reports which were present.
const (
	AccountID uint8 = 1 << iota
	Settings
	WidgetCode
	SealedSettings
	EnqueueID
	Integration
	BatchID
)

// Decode reads b into p and reports which fields it held; ok is false
// when b is not in the compact form (p is then partly filled: discard it).
// Settings is a copy; b is valid UTF-8 already.
func Decode(b []byte, p *Install) (seen uint8, ok bool) {
	if len(b) < 2 || b[0] != '{' {
		return 0, false
	}
	i := 1
	if b[i] == '}' {
		return 0, i+1 == len(b)
	}
	for {
		key, n, ok := plainString(b, i)
		if !ok || n >= len(b) || b[n] != ':' {
			return 0, false
		}
		i = n + 1
		var bit uint8
		switch key {
		case "account_id":
			bit = AccountID
			j := i
			if j < len(b) && b[j] == '-' {
				j++
			}
			start := j
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			if j == start || (b[start] == '0' && j-start > 1) {
				return 0, false
			}
			v, err := strconv.ParseInt(string(b[i:j]), 10, 64)
			if err != nil {
				return 0, false
			}
			p.AccountID, i = v, j
		case "settings":
			bit = Settings
			j, ok := objectEnd(b, i)
			if !ok || !json.Valid(b[i:j]) {
				return 0, false
			}
			p.Settings, i = bytes.Clone(b[i:j]), j
		default:
			var dst *string
			switch key {
			case "widget_code":
				bit, dst = WidgetCode, &p.WidgetCode
			case "sealed_settings":
				bit, dst = SealedSettings, &p.SealedSettings
			case "enqueue_id":
				bit, dst = EnqueueID, &p.EnqueueID
			case "integration":
				bit, dst = Integration, &p.Integration
			case "batch_id":
				bit, dst = BatchID, &p.BatchID
			default:
				return 0, false
			}
			v, n, ok := plainString(b, i)
			if !ok {
				return 0, false
			}
			*dst, i = v, n
		}
		if seen&bit != 0 {
			return 0, false
		}
		seen |= bit
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return seen, i+1 == len(b)
		default:
			return 0, false
		}
	}
}

// plainString reads a JSON string at b[i] that has no escape and no
// control character, and returns it and the index after its closing quote.
func plainString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return string(b[i+1 : j]), j + 1, true
		case c == '\\' || c < 0x20:
			return "", 0, false
		}
	}
	return "", 0, false
}

// objectEnd returns the index after the JSON object that starts at b[i],
// by its braces outside strings; json.Valid then checks what it spans.
func objectEnd(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	depth, inString := 0, false
	for j := i; j < len(b); j++ {
		c := b[j]
		if inString {
			switch c {
			case '\\':
				j++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1, c == '}'
			}
		}
	}
	return 0, false
}
