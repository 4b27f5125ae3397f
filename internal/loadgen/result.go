package loadgen

import (
	"time"
)

// Result is the client-side measurement of one run.
type Result struct {
	Load              Load             `json:"load"`
	Started           time.Time        `json:"started"`
	Elapsed           float64          `json:"elapsed_s"` // first request to last answer
	Offered           int64            `json:"offered_requests"`
	Dropped           int64            `json:"dropped_by_generator"`
	Completed         int64            `json:"completed_requests"`
	Accepted          int64            `json:"accepted_requests"`
	AcceptedEvents    int64            `json:"accepted_events"`
	ReqPerSec         float64          `json:"requests_per_s"`
	AcceptedReqPerSec float64          `json:"accepted_requests_per_s"`
	EventsPerSec      float64          `json:"accepted_events_per_s"`
	ErrorRate         float64          `json:"error_rate"` // answered non-202 or failed, of the requests sent
	Latency           Latency          `json:"latency"`
	Status            map[string]Count `json:"status"`
	Paths             map[string]int64 `json:"paths"`
	Timeline          []Second         `json:"timeline"`
	LastAccepted      time.Time        `json:"last_accepted"`
	AcceptedIDs       []Range          `json:"accepted_ids"`
	UnknownIDs        []Range          `json:"unknown_outcome_ids"`
}

func newResult(l Load, start time.Time, elapsed time.Duration, t Tally, accepted, unknown *IDSet) *Result {
	secs := elapsed.Seconds()
	rate := func(n int64) float64 {
		if secs <= 0 {
			return 0
		}
		return float64(n) / secs
	}
	r := &Result{
		Load: l, Started: start, Elapsed: secs,
		Offered: t.Offered, Dropped: t.Dropped, Completed: t.Completed,
		Accepted: t.Accepted, AcceptedEvents: t.AcceptedEvents,
		ReqPerSec: rate(t.Completed), AcceptedReqPerSec: rate(t.Accepted), EventsPerSec: rate(t.AcceptedEvents),
		Latency: t.Latency, Status: map[string]Count{}, Paths: t.Paths, Timeline: t.Timeline,
		LastAccepted: t.LastAccepted, AcceptedIDs: accepted.Ranges(), UnknownIDs: unknown.Ranges(),
	}
	if t.Completed > 0 {
		r.ErrorRate = float64(t.Completed-t.Accepted) / float64(t.Completed)
	}
	for k, n := range t.Status {
		r.Status[k] = Count{N: n, Rate: rate(n)}
	}
	return r
}
