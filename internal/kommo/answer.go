package kommo

import (
	"bytes"
	"unicode/utf8"
)

// fastDecoder is an answer type with a reader of its own for the common
// case: decodeFast reports whether it read b, exactly as json.Unmarshal
// would have; when it did not, send decodes b with json.Unmarshal as
// before (which also judges a body that is not JSON).
type fastDecoder interface {
	decodeFast(b []byte) bool
}

// decodeFast reads an install's answer in one pass: a JSON object whose
// id, code, version and is_active_in_account are in their plain forms
// (an integer, a string without escapes, true/false/null) and whose other
// members are skipped. json.Unmarshal scanned the whole widget twice
// (once to check it, once to decode) for these four fields: 4% of the
// worker's CPU, a seventh of the handler's. Anything else — a key in
// another case, an escape, a number version, a deep nesting, a body that
// is not JSON — is left to json.Unmarshal; FuzzInstalledAnswer holds the
// two to the same result.
func (w *installed) decodeFast(b []byte) bool {
	var out installed
	p := &scan{b: b}
	p.ws()
	if !p.byte('{') {
		return false
	}
	p.ws()
	if p.byte('}') {
		return p.end(w, out)
	}
	for {
		p.ws()
		key, ok := p.plainString()
		if !ok {
			return false
		}
		p.ws()
		if !p.byte(':') {
			return false
		}
		p.ws()
		switch string(key) {
		case "id":
			if p.null() {
				break // null leaves an int as it was
			}
			n, ok := p.smallInt()
			if !ok {
				return false
			}
			out.ID = n
		case "code":
			if p.null() {
				break // null leaves a string as it was
			}
			s, ok := p.plainString()
			if !ok || !utf8.Valid(s) {
				return false
			}
			out.Code = string(s)
		case "version":
			if p.null() {
				out.Version = "" // Version's UnmarshalJSON is called with null
				break
			}
			s, ok := p.plainString()
			if !ok || !utf8.Valid(s) {
				return false
			}
			out.Version = Version(s)
		case "is_active_in_account":
			switch {
			case p.literal("true"):
				out.IsActiveInAccount = true
			case p.literal("false"), p.literal("null"):
				out.IsActiveInAccount = false
			default:
				return false
			}
		default:
			// encoding/json matches keys without regard to case.
			for _, k := range [...]string{"id", "code", "version", "is_active_in_account"} {
				if bytes.EqualFold(key, []byte(k)) {
					return false
				}
			}
			if !p.skip(0) {
				return false
			}
		}
		done, ok := p.more('}')
		if !ok {
			return false
		}
		if done {
			return p.end(w, out)
		}
	}
}

// scan is a cursor over a JSON text for decodeFast.
type scan struct {
	b []byte
	i int
}

// maxSkipDepth bounds the nesting decodeFast skips (deeper: json.Unmarshal).
const maxSkipDepth = 64

// end accepts the object just closed if only whitespace follows it.
func (p *scan) end(w *installed, out installed) bool {
	p.ws()
	if p.i != len(p.b) {
		return false
	}
	*w = out
	return true
}

// more reads what follows a member or an element: whitespace, then the
// closing byte (done) or a comma (ok, not done); anything else is not ok.
func (p *scan) more(close byte) (done, ok bool) {
	p.ws()
	if p.byte(close) {
		return true, true
	}
	return false, p.byte(',')
}

func (p *scan) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *scan) byte(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *scan) literal(s string) bool {
	if bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		p.i += len(s)
		return true
	}
	return false
}

func (p *scan) null() bool { return p.literal("null") }

// plainString reads a string with no escape and no control character and
// returns its bytes.
func (p *scan) plainString() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// smallInt reads an integer of at most 18 digits (no fraction, no
// exponent, no leading zero).
func (p *scan) smallInt() (int, bool) {
	neg := p.byte('-')
	start := p.i
	n := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		n = n*10 + int(p.b[p.i]-'0')
		p.i++
	}
	digits := p.i - start
	if digits == 0 || digits > 18 || (digits > 1 && p.b[start] == '0') {
		return 0, false
	}
	if p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// skip passes over one valid JSON value.
func (p *scan) skip(depth int) bool {
	if depth > maxSkipDepth || p.i >= len(p.b) {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		return p.skipString()
	case c == '{':
		p.i++
		p.ws()
		if p.byte('}') {
			return true
		}
		for {
			p.ws()
			if !p.skipString() {
				return false
			}
			p.ws()
			if !p.byte(':') {
				return false
			}
			p.ws()
			if !p.skip(depth + 1) {
				return false
			}
			if done, ok := p.more('}'); done || !ok {
				return ok
			}
		}
	case c == '[':
		p.i++
		p.ws()
		if p.byte(']') {
			return true
		}
		for {
			p.ws()
			if !p.skip(depth + 1) {
				return false
			}
			if done, ok := p.more(']'); done || !ok {
				return ok
			}
		}
	case c == '-' || (c >= '0' && c <= '9'):
		return p.skipNumber()
	default:
		return p.literal("true") || p.literal("false") || p.null()
	}
}

// skipString passes over a valid JSON string, escapes included.
func (p *scan) skipString() bool {
	if !p.byte('"') {
		return false
	}
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			p.i++
			if p.i >= len(p.b) {
				return false
			}
			switch p.b[p.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if p.i+4 >= len(p.b) {
					return false
				}
				for _, h := range p.b[p.i+1 : p.i+5] {
					if !isHex(h) {
						return false
					}
				}
				p.i += 4
			default:
				return false
			}
		}
		p.i++
	}
	return false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// skipNumber passes over a valid JSON number.
func (p *scan) skipNumber() bool {
	p.byte('-')
	digits := func() int {
		s := p.i
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
		}
		return p.i - s
	}
	start := p.i
	n := digits()
	if n == 0 || (n > 1 && p.b[start] == '0') {
		return false
	}
	if p.byte('.') && digits() == 0 {
		return false
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if !p.byte('+') {
			p.byte('-')
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}
