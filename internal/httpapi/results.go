package httpapi

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"

	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/tasks"
)

// ResultsPage is GET /v1/results's answer.
type ResultsPage struct {
	Results []store.Result `json:"results"`
	// NextCursor continues the listing; absent on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// maxScan bounds how many results one page reads while filtering.
const maxScan = 20000

// listResults answers GET /v1/results?status=&class=&batch=&integration=&cursor=&limit=:
// results in (account, widget) order, filtered, a page at a time. The
// cursor is where the scan of the status's index stopped: results that
// change status meanwhile may move in or out of later pages.
func (s *Server) listResults(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status, class, batch, integ := q.Get("status"), q.Get("class"), q.Get("batch"), q.Get("integration")
	if status != "" && !store.Status(status).Valid() {
		writeProblem(w, http.StatusBadRequest, "malformed", fmt.Sprintf("status: %.30q is not a status", status))
		return
	}
	if batch != "" && !tasks.ValidBatchID(batch) {
		writeProblem(w, http.StatusBadRequest, "malformed", fmt.Sprintf("batch: %.40q is not a batch ID", batch))
		return
	}
	if integ != "" && !tasks.ValidIntegration(integ) {
		writeProblem(w, http.StatusBadRequest, "malformed", fmt.Sprintf("integration: %.50q is not an integration name", integ))
		return
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeProblem(w, http.StatusBadRequest, "malformed", fmt.Sprintf("limit: want 1 to 1000, got %.20q", v))
			return
		}
		limit = n
	}
	offset := 0
	if c := q.Get("cursor"); c != "" {
		raw, err := base64.RawURLEncoding.DecodeString(c)
		n, aerr := strconv.Atoi(string(raw))
		if err != nil || aerr != nil || n < 0 {
			writeProblem(w, http.StatusBadRequest, "malformed", "cursor: not one this API gave")
			return
		}
		offset = n
	}
	page := ResultsPage{Results: []store.Result{}}
	scanned := 0
	for scanned < maxScan {
		chunk, err := s.Store.Results(r.Context(), store.Query{Status: store.Status(status), Offset: offset, Limit: 500})
		if err != nil {
			writeProblem(w, http.StatusServiceUnavailable, "unavailable", "Redis failed; try again")
			return
		}
		for i, res := range chunk.Results {
			if (class == "" || (res.LastError != nil && res.LastError.Class == class)) && (batch == "" || res.BatchID == batch) &&
				(integ == "" || store.IntegrationOf(res.Integration) == integ) {
				page.Results = append(page.Results, res)
				if len(page.Results) == limit {
					if next := offset + i + 1; int64(next) < chunk.Total {
						page.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(next)))
					}
					writeJSON(w, http.StatusOK, page)
					return
				}
			}
		}
		scanned += len(chunk.Results)
		offset += len(chunk.Results)
		if len(chunk.Results) == 0 || int64(offset) >= chunk.Total {
			writeJSON(w, http.StatusOK, page)
			return
		}
	}
	// A sparse filter: hand back what was found and where to go on.
	page.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(offset)))
	writeJSON(w, http.StatusOK, page)
}
