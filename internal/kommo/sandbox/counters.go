package sandbox

import (
	"encoding/json"
	"maps"
	"net/http"
	"strconv"
	"time"
)

// Totals are counts over all accounts.
type Totals struct {
	Requests      int64 `json:"requests"`
	Installs      int64 `json:"installs"`
	Uninstalls    int64 `json:"uninstalls"`
	Refreshes     int64 `json:"refreshes"`
	RevokedReuses int64 `json:"revoked_reuses"`
	// WrongClient counts refreshes sent with another client's credentials
	// than the refresh token's.
	WrongClient    int64 `json:"wrong_client"`
	RateLimited    int64 `json:"rate_limited"`
	Blocks         int64 `json:"blocks"`
	BlockedAnswers int64 `json:"blocked_answers"`
	IPBlocks       int64 `json:"ip_blocks"`
	InjectedErrors int64 `json:"injected_errors"`
	Resets         int64 `json:"resets"`
	Hangs          int64 `json:"hangs"`
	Truncations    int64 `json:"truncations"`
}

// AccountCounters are one account's counts.
type AccountCounters struct {
	Subdomain string `json:"subdomain"`
	Totals
	// Installed counts successful installs per widget code.
	Installed map[string]int64 `json:"installed,omitempty"`
	// Uninstalled counts successful uninstalls per widget code.
	Uninstalled map[string]int64 `json:"uninstalled,omitempty"`
	// MaxConcurrent is the most requests in flight at once seen.
	MaxConcurrent int `json:"max_concurrent"`
	// FirstAt and LastAt are the first and the latest arrival: the span
	// over which a rate is judged.
	FirstAt time.Time `json:"first_at,omitzero"`
	LastAt  time.Time `json:"last_at,omitzero"`
}

// Counters is a snapshot of what the sandbox saw.
type Counters struct {
	// Requests counts answers by route ("POST /api/v4/widgets/{code}")
	// and status ("200", "429"; "gone" when none was sent, "truncated"
	// when cut off).
	Requests map[string]map[string]int64 `json:"requests"`
	// Accounts are keyed by account ID.
	Accounts map[string]AccountCounters `json:"accounts"`
	// Clients are keyed by OAuth client ID.
	Clients map[string]ClientCounters `json:"clients"`
	Total   Totals                    `json:"total"`
	// FirstAt and LastAt are the first and the latest arrival of all.
	FirstAt time.Time `json:"first_at,omitzero"`
	LastAt  time.Time `json:"last_at,omitzero"`
}

// Installs returns how many times a widget was installed in an account.
func (c Counters) Installs(accountID int, code string) int64 {
	return c.Accounts[strconv.Itoa(accountID)].Installed[code]
}

// ClientCounters are one OAuth client's counts.
type ClientCounters struct {
	// Requests counts requests made with the client's access tokens or
	// credentials, whatever the answer.
	Requests int64 `json:"requests"`
	// Refreshes counts refresh grants the client was given.
	Refreshes int64 `json:"refreshes"`
}

type countersState struct {
	requests        map[string]map[string]int64
	accounts        map[int]*AccountCounters
	clients         map[string]*ClientCounters
	total           Totals
	firstAt, lastAt time.Time
}

func newCountersState() countersState {
	return countersState{requests: map[string]map[string]int64{}, accounts: map[int]*AccountCounters{}, clients: map[string]*ClientCounters{}}
}

func (c *countersState) clientLocked(id string) *ClientCounters {
	cc := c.clients[id]
	if cc == nil {
		cc = &ClientCounters{}
		c.clients[id] = cc
	}
	return cc
}

func (s *Server) countLocked(x *exchange) {
	st := strconv.Itoa(x.status)
	switch x.status {
	case statusGone:
		st = "gone"
	case statusTruncated:
		st = "truncated"
	}
	m := s.counters.requests[x.route]
	if m == nil {
		m = map[string]int64{}
		s.counters.requests[x.route] = m
	}
	m[st]++
	s.counters.total.Requests++
	x.acct.stats.Requests++
	if x.client != "" {
		s.counters.clientLocked(x.client).Requests++
	}
}

// Counters returns a snapshot of the counters.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := Counters{Requests: map[string]map[string]int64{}, Accounts: map[string]AccountCounters{}, Clients: map[string]ClientCounters{}, Total: s.counters.total,
		FirstAt: s.counters.firstAt, LastAt: s.counters.lastAt}
	for k, v := range s.counters.requests {
		c.Requests[k] = maps.Clone(v)
	}
	for id, cc := range s.counters.clients {
		c.Clients[id] = *cc
	}
	for id, a := range s.counters.accounts {
		cp := *a
		cp.Installed = maps.Clone(a.Installed)
		cp.Uninstalled = maps.Clone(a.Uninstalled)
		c.Accounts[strconv.Itoa(id)] = cp
	}
	return c
}

// ResetCounters sets every counter to zero; accounts, tokens and install
// state stay.
func (s *Server) ResetCounters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters.requests = map[string]map[string]int64{}
	s.counters.total = Totals{}
	s.counters.clients = map[string]*ClientCounters{}
	s.counters.firstAt, s.counters.lastAt = time.Time{}, time.Time{}
	for _, a := range s.accounts {
		*a.stats = AccountCounters{Subdomain: a.Subdomain}
	}
}

func (s *Server) getCounters(w http.ResponseWriter, r *http.Request) {
	b, _ := json.Marshal(s.Counters())
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (s *Server) resetCounters(w http.ResponseWriter, r *http.Request) {
	s.ResetCounters()
	w.WriteHeader(http.StatusNoContent)
}

// faultsRequest is PUT /_sandbox/faults's body.
type faultsRequest struct {
	Account string `json:"account"`
	Faults  Faults `json:"faults"`
}

func (s *Server) putFaults(w http.ResponseWriter, r *http.Request) {
	var req faultsRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "faults: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.SetFaults(req.Account, req.Faults); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteFaults(w http.ResponseWriter, r *http.Request) {
	s.ClearFaults()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) postUnblock(w http.ResponseWriter, r *http.Request) {
	s.Unblock(r.PathValue("sub"))
	w.WriteHeader(http.StatusNoContent)
}
