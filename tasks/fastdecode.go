package tasks

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// decodeInstallFast decodes the payloads widgetq's producers write —
// compact JSON, the payload's own field names, an integer account ID,
// strings without escapes, settings an object — without encoding/json's
// reflection and Decoder (two thirds of a payload's decode). It reports
// false for anything else, and the caller decodes it with decodeStrict,
// which is the authority: whatever this accepts, decodeStrict decodes to
// the same payload (FuzzDecodeInstallFast holds it to that). payload is
// valid UTF-8 already.
func decodeInstallFast(payload []byte, p *InstallWidgetPayload) bool {
	b := payload
	if len(b) < 2 || b[0] != '{' {
		return false
	}
	i := 1
	if b[i] == '}' {
		return i+1 == len(b)
	}
	var seen uint8
	for {
		key, n, ok := plainString(b, i)
		if !ok || n >= len(b) || b[n] != ':' {
			return false
		}
		i = n + 1
		var bit uint8
		switch key {
		case "account_id":
			bit = 1 << 0
			j := i
			if j < len(b) && b[j] == '-' {
				j++
			}
			start := j
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			if j == start || (b[start] == '0' && j-start > 1) {
				return false
			}
			v, err := strconv.ParseInt(string(b[i:j]), 10, 64)
			if err != nil {
				return false
			}
			p.AccountID, i = v, j
		case "settings":
			bit = 1 << 1
			j, ok := objectEnd(b, i)
			if !ok || !json.Valid(b[i:j]) {
				return false
			}
			p.Settings, i = bytes.Clone(b[i:j]), j
		default:
			var dst *string
			switch key {
			case "widget_code":
				bit, dst = 1<<2, &p.WidgetCode
			case "sealed_settings":
				bit, dst = 1<<3, &p.SealedSettings
			case "enqueue_id":
				bit, dst = 1<<4, &p.EnqueueID
			case "integration":
				bit, dst = 1<<5, &p.Integration
			case "batch_id":
				bit, dst = 1<<6, &p.BatchID
			default:
				return false
			}
			v, n, ok := plainString(b, i)
			if !ok {
				return false
			}
			*dst, i = v, n
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return i+1 == len(b)
		default:
			return false
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
