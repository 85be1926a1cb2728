package sandbox

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"
)

// Duration is a time.Duration that reads and writes JSON as "150ms" (or a
// number of nanoseconds).
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "150ms" or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration: %w", err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: want \"150ms\" or nanoseconds")
	}
	*d = Duration(n)
	return nil
}

// Faults are what the sandbox does wrong on purpose, for one account or for
// all. Rates are shares of requests in [0,1]; one draw per request picks at
// most one of error, reset, hang and truncate, in that order.
type Faults struct {
	// Latency ± LatencyJitter is added to every answer.
	Latency       Duration `json:"latency,omitempty"`
	LatencyJitter Duration `json:"latency_jitter,omitempty"`
	// ErrorRate answers with one of ErrorStatuses (default 500, 502, 503,
	// 504), as problem+json, or as a proxy's HTML page if ErrorHTML.
	ErrorRate     float64 `json:"error_rate,omitempty"`
	ErrorStatuses []int   `json:"error_statuses,omitempty"`
	ErrorHTML     bool    `json:"error_html,omitempty"`
	// ResetRate resets the connection without an answer.
	ResetRate float64 `json:"reset_rate,omitempty"`
	// HangRate holds the request without an answer until the client gives
	// up, the sandbox closes, or HangFor (default 2 min) passes.
	HangRate float64  `json:"hang_rate,omitempty"`
	HangFor  Duration `json:"hang_for,omitempty"`
	// TruncateRate cuts a successful answer's body off halfway.
	TruncateRate float64 `json:"truncate_rate,omitempty"`
	// Limit stops injecting errors, resets, hangs and truncations after
	// this many (0: no limit). Latency stays.
	Limit int `json:"limit,omitempty"`
	// Routes, when set, limits errors, resets, hangs and truncations to
	// these routes, e.g. "POST /api/v4/widgets/{code}".
	Routes []string `json:"routes,omitempty"`
}

func (f Faults) validate() error {
	for name, r := range map[string]float64{"error_rate": f.ErrorRate, "reset_rate": f.ResetRate, "hang_rate": f.HangRate, "truncate_rate": f.TruncateRate} {
		if r < 0 || r > 1 {
			return fmt.Errorf("%s must be within [0,1], got %v", name, r)
		}
	}
	if sum := f.ErrorRate + f.ResetRate + f.HangRate + f.TruncateRate; sum > 1.000001 {
		return fmt.Errorf("rates add up to %v, more than 1", sum)
	}
	for _, st := range f.ErrorStatuses {
		if st < 400 || st > 599 {
			return fmt.Errorf("error_statuses: %d is not an error status", st)
		}
	}
	if f.Latency < 0 || f.LatencyJitter < 0 || f.HangFor < 0 || f.Limit < 0 {
		return fmt.Errorf("latency, latency_jitter, hang_for and limit must not be negative")
	}
	return nil
}

type faultState struct {
	Faults
	injected int
}

type faultKind int

const (
	faultNone faultKind = iota
	faultError
	faultReset
	faultHang
	faultTruncate
)

type fault struct {
	kind    faultKind
	status  int
	html    bool
	hangFor time.Duration
}

// SetFaults sets the faults of one account (by subdomain), or of every
// account without faults of its own when subdomain is "".
func (s *Server) SetFaults(subdomain string, f Faults) error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("sandbox: faults: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &faultState{Faults: f}
	if subdomain == "" {
		s.faults = st
		return nil
	}
	a := s.accounts[subdomain]
	if a == nil {
		return fmt.Errorf("sandbox: no account %q", subdomain)
	}
	a.faults = st
	return nil
}

// ClearFaults removes every fault, global and per account.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
	for _, a := range s.accounts {
		a.faults = nil
	}
}

func (s *Server) faultsFor(a *account) *faultState {
	if a.faults != nil {
		return a.faults
	}
	return s.faults
}

func (s *Server) pickFaultLocked(a *account, route string) fault {
	f := s.faultsFor(a)
	if f == nil || (f.Limit > 0 && f.injected >= f.Limit) || (len(f.Routes) > 0 && !slices.Contains(f.Routes, route)) {
		return fault{}
	}
	u := s.rng.Float64()
	var out fault
	switch {
	case u < f.ErrorRate:
		statuses := f.ErrorStatuses
		if len(statuses) == 0 {
			statuses = []int{500, 502, 503, 504}
		}
		out = fault{kind: faultError, status: statuses[s.rng.IntN(len(statuses))], html: f.ErrorHTML}
		a.stats.InjectedErrors++
		s.counters.total.InjectedErrors++
	case u < f.ErrorRate+f.ResetRate:
		out = fault{kind: faultReset}
		a.stats.Resets++
		s.counters.total.Resets++
	case u < f.ErrorRate+f.ResetRate+f.HangRate:
		hang := f.HangFor.D()
		if hang <= 0 {
			hang = 2 * time.Minute
		}
		out = fault{kind: faultHang, hangFor: hang}
		a.stats.Hangs++
		s.counters.total.Hangs++
	case u < f.ErrorRate+f.ResetRate+f.HangRate+f.TruncateRate:
		out = fault{kind: faultTruncate}
		a.stats.Truncations++
		s.counters.total.Truncations++
	default:
		return fault{}
	}
	f.injected++
	return out
}

// resetConn drops the connection with a TCP reset (SO_LINGER 0) when the
// writer can be hijacked, else aborts the answer.
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
