package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"

	"github.com/widgetq/widgetq/internal/store"
)

// IdempotencyHeader names the key a client sends so that retrying a POST
// (its answer lost) enqueues nothing twice: for 24 h the same key and the
// same request get the first answer again; another request with the key
// gets 409.
const IdempotencyHeader = "Idempotency-Key"

// idempotent wraps a POST route with Idempotency-Key handling.
func (s *Server) idempotent(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(IdempotencyHeader)
		if key == "" {
			h(w, r)
			return
		}
		if len(key) > 255 {
			writeProblem(w, http.StatusBadRequest, "malformed", "Idempotency-Key: at most 255 characters")
			return
		}
		limit := s.MaxBody
		if limit <= 0 {
			limit = DefaultMaxBody
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeProblem(w, http.StatusRequestEntityTooLarge, "too-large", "body: too large; send fewer items per request")
			return
		}
		if err != nil {
			writeProblem(w, http.StatusBadRequest, "malformed", "body: "+err.Error())
			return
		}
		sum := sha256.New()
		io.WriteString(sum, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+"\n")
		sum.Write(body)
		fp := hex.EncodeToString(sum.Sum(nil))
		state, ans, err := s.Store.IdemBegin(r.Context(), key, fp)
		if err != nil {
			writeProblem(w, http.StatusServiceUnavailable, "unavailable", "Redis failed; nothing was enqueued — send it again")
			return
		}
		switch state {
		case store.IdemConflict:
			writeProblem(w, http.StatusConflict, "conflict", "Idempotency-Key: already used with another request within 24 h; use a new key")
			return
		case store.IdemPending:
			writeProblem(w, http.StatusConflict, "conflict", "Idempotency-Key: the first request with this key is still being answered; try again shortly")
			return
		case store.IdemReplay:
			w.Header().Set("Content-Type", ans.ContentType)
			w.Header().Set("Idempotent-Replayed", "true")
			w.WriteHeader(ans.Status)
			_, _ = w.Write(ans.Body)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &recorder{header: http.Header{}, status: http.StatusOK}
		h(rec, r)
		ctx := context.WithoutCancel(r.Context())
		if rec.status >= 500 {
			// Nothing took effect: the key may be used again.
			_ = s.Store.IdemAbort(ctx, key)
		} else if err := s.Store.IdemFinish(ctx, key, store.Answer{Status: rec.status, ContentType: rec.header.Get("Content-Type"), Body: rec.body.Bytes()}); err != nil {
			s.logger().Warn("could not keep the answer of an Idempotency-Key", "error", err)
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body.Bytes())
	}
}

// recorder keeps an answer to store it before it is sent.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}
