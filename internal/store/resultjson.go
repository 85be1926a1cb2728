package store

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// encodeResult is json.Marshal(r), byte for byte, without reflection for
// a result as the worker records it: plain ASCII strings (no quote,
// backslash, control character or HTML-escaped character), times in UTC,
// no error. Anything else goes through json.Marshal, which stays the
// authority: FuzzEncodeResult holds the two to the same bytes.
func encodeResult(r *Result) ([]byte, error) {
	if r.LastError == nil {
		if b, ok := appendResult(make([]byte, 0, 512), r); ok {
			return b, nil
		}
	}
	return json.Marshal(r)
}

func appendResult(b []byte, r *Result) ([]byte, bool) {
	if r.LastError != nil {
		return nil, false
	}
	w := resultWriter{b: b, ok: true}
	w.raw(`{"account_id":`)
	w.b = strconv.AppendInt(w.b, r.AccountID, 10)
	w.str(`,"widget_code":`, r.WidgetCode)
	w.optStr(`,"integration":`, r.Integration)
	w.optStr(`,"batch_id":`, r.BatchID)
	if len(r.SettingsDigest) > 0 {
		w.raw(`,"settings_digest":{`)
		keys := make([]string, 0, len(r.SettingsDigest))
		for k := range r.SettingsDigest {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				w.raw(",")
			}
			w.str("", k)
			w.str(":", r.SettingsDigest[k])
		}
		w.raw("}")
	}
	w.optTime(`,"verified_at":`, r.VerifiedAt)
	w.str(`,"operation":`, r.Operation)
	w.str(`,"status":`, string(r.Status))
	w.optStr(`,"task_id":`, r.TaskID)
	w.optStr(`,"queue":`, r.Queue)
	w.optStr(`,"enqueue_id":`, r.EnqueueID)
	if r.WidgetID != 0 {
		w.raw(`,"widget_id":`)
		w.b = strconv.AppendInt(w.b, int64(r.WidgetID), 10)
	}
	w.optStr(`,"widget_version":`, r.WidgetVersion)
	w.raw(`,"attempts":`)
	w.b = strconv.AppendInt(w.b, int64(r.Attempts), 10)
	w.time(`,"created_at":`, r.CreatedAt)
	w.optTime(`,"queued_at":`, r.QueuedAt)
	w.time(`,"updated_at":`, r.UpdatedAt)
	w.optTime(`,"finished_at":`, r.FinishedAt)
	w.raw("}")
	return w.b, w.ok
}

// resultWriter appends JSON; ok turns false at the first value it cannot
// write as json.Marshal would.
type resultWriter struct {
	b  []byte
	ok bool
}

func (w *resultWriter) raw(s string) { w.b = append(w.b, s...) }

func (w *resultWriter) str(name, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			w.ok = false
			return
		}
	}
	w.b = append(append(append(append(w.b, name...), '"'), s...), '"')
}

func (w *resultWriter) optStr(name, s string) {
	if s != "" {
		w.str(name, s)
	}
}

func (w *resultWriter) time(name string, t time.Time) {
	if t.Location() != time.UTC || t.Year() < 0 || t.Year() > 9999 {
		w.ok = false
		return
	}
	w.b = append(append(w.b, name...), '"')
	w.b = append(t.AppendFormat(w.b, time.RFC3339Nano), '"')
}

func (w *resultWriter) optTime(name string, t time.Time) {
	if !t.IsZero() {
		w.time(name, t)
	}
}
