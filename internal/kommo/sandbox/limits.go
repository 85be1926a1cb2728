package sandbox

import "time"

// ring holds the arrival times of the last n admitted requests. A request
// is admitted when the n-th latest arrival is at least a second old, so no
// window of one second, wherever it starts, holds more than n: the limit is
// judged on arrival, as Kommo's edge judges it, not in fixed buckets.
type ring struct {
	t    []time.Time
	next int
}

func newRing(n int) ring { return ring{t: make([]time.Time, n)} }

func (r *ring) size() int { return len(r.t) }

// admit records an arrival at now if it keeps the window within the limit.
func (r *ring) admit(now time.Time) bool {
	if len(r.t) == 0 {
		return true
	}
	oldest := r.t[r.next]
	if !oldest.IsZero() && now.Sub(oldest) < time.Second {
		return false
	}
	r.t[r.next] = now
	r.next = (r.next + 1) % len(r.t)
	return true
}

// unadmit takes back the latest admission.
func (r *ring) unadmit() {
	if len(r.t) == 0 {
		return
	}
	r.next = (r.next - 1 + len(r.t)) % len(r.t)
	r.t[r.next] = time.Time{}
}
