// Package bulk reads bulk install files — JSON lines or CSV — one entry at
// a time, with memory flat in the file's size, and says for each bad
// line what is wrong with it, by line number.
//
// JSONL: one object a line, {"account_id":…, "widget_code":"…",
// "settings":{…}, "integration":"…"} (integration optional). CSV: a header
// naming account_id, widget_code, settings and optionally integration (in
// any order), settings as JSON text. Both accept a UTF-8 BOM,
// CRLF line ends and blank lines.
package bulk

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/widgetq/widgetq/internal/payloadjson"
	"github.com/widgetq/widgetq/tasks"
)

// Format is a bulk file's format.
type Format string

// The formats.
const (
	JSONL Format = "jsonl"
	CSV   Format = "csv"
)

// MaxLine bounds one line (JSONL) or record (CSV).
const MaxLine = 1 << 20

// FormatOf picks the format from a file name: .jsonl, .ndjson and .json
// are JSONL, .csv is CSV. It returns "" when the name says nothing.
func FormatOf(name string) Format {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jsonl", ".ndjson", ".json":
		return JSONL
	case ".csv":
		return CSV
	}
	return ""
}

// LineReader reads a text file line by line: a UTF-8 BOM at the start is
// skipped, CRLF ends are accepted, blank lines are passed over, and a line
// longer than MaxLine is reported (long) and skipped, never held whole.
type LineReader struct {
	br   *bufio.Reader
	line int
}

// NewLineReader reads r.
func NewLineReader(r io.Reader) *LineReader {
	br := bufio.NewReaderSize(r, 64<<10)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		_, _ = br.Discard(3)
	}
	return &LineReader{br: br}
}

// Next returns the next non-blank line (without its end), its number
// (counting every physical line from 1), and whether it was longer than
// MaxLine; io.EOF at the end.
func (l *LineReader) Next() (line []byte, n int, long bool, err error) {
	for {
		line, long, err = l.readLine()
		if err != nil {
			return nil, l.line, false, err
		}
		if long || len(bytes.TrimSpace(line)) > 0 {
			return line, l.line, long, nil
		}
	}
}

func (l *LineReader) readLine() ([]byte, bool, error) {
	var line []byte
	long := false
	for {
		frag, err := l.br.ReadSlice('\n')
		if len(line)+len(frag) <= MaxLine+2 {
			line = append(line, frag...)
		} else {
			long = true
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF && len(line) == 0 && !long {
			return nil, false, io.EOF
		}
		if err != nil && err != io.EOF {
			return nil, false, err
		}
		l.line++
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > MaxLine {
			long = true
		}
		return line, long, nil
	}
}

// Entry is one good line.
type Entry struct {
	Line    int
	Payload tasks.InstallWidgetPayload
	// Raw is the line as read (CSV: re-encoded), for a rejects file.
	Raw []byte
}

// Reject is one bad line and why.
type Reject struct {
	Line   int
	Reason string
	Raw    []byte
}

func (r Reject) String() string { return fmt.Sprintf("line %d: %s", r.Line, r.Reason) }

// Reader reads entries. Next returns either an entry or a reject, or
// io.EOF at the end; a read error of the file itself ends it with that
// error.
type Reader struct {
	format Format
	br     *bufio.Reader
	lines  *LineReader
	line   int
	csv    *csv.Reader
	cols   map[string]int
	header []string
	seen   map[uint64]int
	seed   maphash.Seed
	err    error
	// CSVHeader is the header line, for a rejects file (CSV only).
	CSVHeader []byte
}

// NewReader reads r in the given format. For CSV it reads the header
// first; a bad header is an error.
func NewReader(r io.Reader, format Format) (*Reader, error) {
	lines := NewLineReader(r)
	rd := &Reader{format: format, br: lines.br, lines: lines, seen: map[uint64]int{}, seed: maphash.MakeSeed()}
	switch format {
	case JSONL:
	case CSV:
		if err := rd.readHeader(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown format %q (want jsonl or csv)", format)
	}
	return rd, nil
}

// Sniff picks a format from the first non-blank byte of r ('{' means
// JSONL, else CSV) without consuming it; it returns the reader to use.
func Sniff(r io.Reader) (Format, io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	b, _ := br.Peek(4096)
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) > 0 && b[0] == '{' {
		return JSONL, br
	}
	return CSV, br
}

func (r *Reader) readHeader() error {
	r.csv = csv.NewReader(r.br)
	r.csv.FieldsPerRecord = -1
	r.csv.ReuseRecord = false
	for {
		rec, err := r.csv.Read()
		if err == io.EOF {
			return errors.New("CSV: no header line (want account_id,widget_code,settings)")
		}
		if err != nil {
			return fmt.Errorf("CSV header: %s", csvErr(err))
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		r.cols = map[string]int{}
		for i, name := range rec {
			name = strings.ToLower(strings.TrimSpace(name))
			if _, dup := r.cols[name]; dup {
				return fmt.Errorf("CSV header: column %q twice", name)
			}
			switch name {
			case "account_id", "widget_code", "settings", "integration":
				r.cols[name] = i
			default:
				return fmt.Errorf("CSV header: unknown column %q (want account_id, widget_code, settings)", name)
			}
		}
		for _, need := range []string{"account_id", "widget_code"} {
			if _, ok := r.cols[need]; !ok {
				return fmt.Errorf("CSV header: no %s column", need)
			}
		}
		r.header = rec
		r.CSVHeader = encodeCSV(rec)
		return nil
	}
}

// Next returns the next entry or reject, or io.EOF.
func (r *Reader) Next() (*Entry, *Reject, error) {
	if r.err != nil {
		return nil, nil, r.err
	}
	if r.format == CSV {
		return r.nextCSV()
	}
	return r.nextJSONL()
}

// jsonLine is a JSONL line as sent; pointers tell absent from zero.
type jsonLine struct {
	AccountID  json.RawMessage  `json:"account_id"`
	WidgetCode *string          `json:"widget_code"`
	Settings   *json.RawMessage `json:"settings"`
	// Integration is optional: the widget's registered owner, else default.
	Integration string `json:"integration"`
}

func (r *Reader) nextJSONL() (*Entry, *Reject, error) {
	line, n, long, err := r.lines.Next()
	if err != nil {
		r.err = err
		return nil, nil, err
	}
	r.line = n
	if long {
		return nil, &Reject{Line: r.line, Reason: fmt.Sprintf("line longer than %d bytes", MaxLine)}, nil
	}
	raw := append([]byte(nil), line...)
	p, reason := ParseJSONLine(line)
	if reason != "" {
		return nil, &Reject{Line: r.line, Reason: reason, Raw: raw}, nil
	}
	if rej := r.dedupe(r.line, p, raw); rej != nil {
		return nil, rej, nil
	}
	return &Entry{Line: r.line, Payload: p, Raw: raw}, nil, nil
}

func (r *Reader) nextCSV() (*Entry, *Reject, error) {
	for {
		rec, err := r.csv.Read()
		if err == io.EOF {
			r.err = io.EOF
			return nil, nil, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, &Reject{Line: pe.StartLine, Reason: csvErr(err), Raw: nil}, nil
		}
		if err != nil {
			r.err = err
			return nil, nil, err
		}
		line, _ := r.csv.FieldPos(0)
		raw := encodeCSV(rec)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if len(raw) > MaxLine {
			return nil, &Reject{Line: line, Reason: fmt.Sprintf("record longer than %d bytes", MaxLine), Raw: nil}, nil
		}
		for _, f := range rec {
			if !utf8.ValidString(f) {
				return nil, &Reject{Line: line, Reason: "not valid UTF-8", Raw: raw}, nil
			}
		}
		if len(rec) != len(r.header) {
			return nil, &Reject{Line: line, Reason: fmt.Sprintf("%d fields, the header has %d", len(rec), len(r.header)), Raw: raw}, nil
		}
		acct := json.Number(strings.TrimSpace(rec[r.cols["account_id"]]))
		code := strings.TrimSpace(rec[r.cols["widget_code"]])
		var settings *json.RawMessage
		if i, ok := r.cols["settings"]; ok && strings.TrimSpace(rec[i]) != "" {
			s := json.RawMessage(rec[i])
			settings = &s
		}
		var ap *json.Number
		if acct != "" {
			ap = &acct
		}
		integ := ""
		if i, ok := r.cols["integration"]; ok {
			integ = strings.TrimSpace(rec[i])
		}
		var cp *string
		if code != "" {
			cp = &code
		}
		p, reason := payloadOf(ap, cp, settings, integ)
		if reason != "" {
			return nil, &Reject{Line: line, Reason: reason, Raw: raw}, nil
		}
		if rej := r.dedupe(line, p, raw); rej != nil {
			return nil, rej, nil
		}
		return &Entry{Line: line, Payload: p, Raw: raw}, nil, nil
	}
}

// ParseJSONLine reads one install as a bulk file's JSON line has it —
// {account_id, widget_code, settings}, nothing else — and returns the
// payload, or what is wrong with it, naming the field.
func ParseJSONLine(line []byte) (tasks.InstallWidgetPayload, string) {
	if !utf8.Valid(line) {
		return tasks.InstallWidgetPayload{}, "not valid UTF-8"
	}
	if p, ok := parseCompactLine(line); ok {
		if err := p.Validate(); err != nil {
			return p, err.Error()
		}
		return p, ""
	}
	return parseJSONLineStrict(line)
}

// lineFields are the fields a JSON line may hold (payloadjson's bits).
const lineFields = payloadjson.AccountID | payloadjson.WidgetCode | payloadjson.Settings | payloadjson.Integration

// parseCompactLine reads a line in payloadjson's compact form (what
// programs write) that has an account and a widget code and no field a
// line may not have, without encoding/json's Decoder: the payload is then
// what parseJSONLineStrict would have built before validating it
// (FuzzParseJSONLineFast holds it to that). Anything else is false.
func parseCompactLine(line []byte) (tasks.InstallWidgetPayload, bool) {
	var c payloadjson.Install
	seen, ok := payloadjson.Decode(line, &c)
	if !ok || seen&^lineFields != 0 || seen&payloadjson.AccountID == 0 || seen&payloadjson.WidgetCode == 0 {
		return tasks.InstallWidgetPayload{}, false
	}
	return tasks.InstallWidgetPayload{AccountID: c.AccountID, WidgetCode: c.WidgetCode, Settings: c.Settings, Integration: c.Integration}, true
}

// parseJSONLineStrict is ParseJSONLine with encoding/json, for any line;
// line is valid UTF-8.
func parseJSONLineStrict(line []byte) (tasks.InstallWidgetPayload, string) {
	var jl jsonLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&jl); err != nil {
		return tasks.InstallWidgetPayload{}, jsonReason(err)
	}
	if dec.More() {
		return tasks.InstallWidgetPayload{}, "more than one JSON value on the line"
	}
	var acct *json.Number
	if a := bytes.TrimSpace(jl.AccountID); len(a) > 0 && !bytes.Equal(a, []byte("null")) {
		if a[0] != '-' && (a[0] < '0' || a[0] > '9') {
			return tasks.InstallWidgetPayload{}, fmt.Sprintf("account_id: want a positive integer, got %s", kindOf(a))
		}
		n := json.Number(a)
		acct = &n
	}
	return payloadOf(acct, jl.WidgetCode, jl.Settings, jl.Integration)
}

// payloadOf checks the three fields and builds the payload, or says what
// is wrong.
func payloadOf(acct *json.Number, code *string, settings *json.RawMessage, integ string) (tasks.InstallWidgetPayload, string) {
	var p tasks.InstallWidgetPayload
	if acct == nil {
		return p, "account_id: required"
	}
	n, err := strconv.ParseInt(acct.String(), 10, 64)
	if err != nil {
		return p, fmt.Sprintf("account_id: want a positive integer, got %.30q", acct.String())
	}
	p.AccountID = n
	if code == nil {
		return p, "widget_code: required"
	}
	p.WidgetCode = *code
	if settings != nil {
		p.Settings = *settings
	}
	p.Integration = integ
	if err := p.Validate(); err != nil {
		return p, err.Error()
	}
	return p, ""
}

// dedupe rejects a second line for the same account and widget. It keeps
// 8 bytes of hash and the line number per distinct entry.
func (r *Reader) dedupe(line int, p tasks.InstallWidgetPayload, raw []byte) *Reject {
	var h maphash.Hash
	h.SetSeed(r.seed)
	_, _ = h.WriteString(strconv.FormatInt(p.AccountID, 10))
	_ = h.WriteByte(0)
	_, _ = h.WriteString(p.WidgetCode)
	k := h.Sum64()
	if first, ok := r.seen[k]; ok {
		return &Reject{Line: line, Reason: fmt.Sprintf("duplicate of line %d (account %d, widget %s)", first, p.AccountID, p.WidgetCode), Raw: raw}
	}
	r.seen[k] = line
	return nil
}

func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field == "" {
		return fmt.Sprintf("want a JSON object {account_id, widget_code, settings}, got %s", te.Value)
	}
	if errors.As(err, &te) {
		want := map[string]string{"account_id": "a positive integer", "widget_code": "a string", "settings": "a JSON object"}[te.Field]
		if want == "" {
			want = te.Type.String()
		}
		return fmt.Sprintf("%s: want %s, got %s", te.Field, want, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "malformed JSON: the line ends inside a value"
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return "unknown field " + f + " (want account_id, widget_code, settings)"
	}
	if strings.HasPrefix(msg, "json: cannot unmarshal") {
		return "want a JSON object {account_id, widget_code, settings}"
	}
	return strings.TrimPrefix(msg, "json: ")
}

func kindOf(v []byte) string {
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	}
	return "something else"
}

func csvErr(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("malformed CSV: %v", pe.Err)
	}
	return err.Error()
}

func encodeCSV(rec []string) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write(rec)
	w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
