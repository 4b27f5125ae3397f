package loadgen

import (
	"context"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// CheckConfig configures the count check of one run.
type CheckConfig struct {
	Sink         SinkConfig    `json:"sink"`
	Prefix       string        `json:"prefix"`
	DrainTimeout time.Duration `json:"drain_timeout"`
	Poll         time.Duration `json:"poll"`
}

// CheckResult compares the sink with what was accepted.
type CheckResult struct {
	Prefix           string   `json:"prefix"`
	Accepted         int64    `json:"accepted"`
	Rows             int64    `json:"rows"`
	Distinct         int64    `json:"distinct"`
	Duplicates       int64    `json:"duplicates"` // rows − distinct ids
	Lost             int64    `json:"lost"`       // accepted and not in the sink
	LostSample       []string `json:"lost_sample,omitempty"`
	Unexpected       int64    `json:"unexpected"` // in the sink, neither accepted nor of unknown outcome
	UnexpectedSample []string `json:"unexpected_sample,omitempty"`
	UnknownOutcome   int64    `json:"unknown_outcome"` // not accepted (timeout, transport error, 5xx) yet in the sink
	Foreign          int64    `json:"foreign"`         // rows under the prefix whose suffix is not a number
	Drained          bool     `json:"drained"`         // the count reached the accepted count and stopped growing
	DrainS           float64  `json:"drain_s"`         // last accepted answer → last growth of the row count
	PollS            float64  `json:"poll_s"`          // resolution of DrainS
	OK               bool     `json:"ok"`
}

// Checker verifies that the sink holds exactly the accepted events.
type Checker struct {
	cfg CheckConfig
	log *zap.Logger
}

// NewChecker returns a checker; it connects to nothing until Check.
func NewChecker(cfg CheckConfig, log *zap.Logger) *Checker {
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 2 * time.Minute
	}
	return &Checker{cfg: cfg, log: log.With(zap.String("component", "check"))}
}

// Check waits, up to the drain timeout, until the rows under the prefix
// stop growing at or above the accepted count, then compares them id by id.
// OK means no loss, no duplicate and no unexpected id.
func (c *Checker) Check(ctx context.Context, accepted, unknown *IDSet, lastAccepted time.Time) (*CheckResult, error) {
	src, err := openRows(ctx, c.cfg.Sink)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	res := &CheckResult{Prefix: c.cfg.Prefix, Accepted: accepted.Len(), PollS: c.cfg.Poll.Seconds()}
	grewAt, err := c.drain(ctx, src, res)
	if err != nil {
		return nil, err
	}
	// No growth seen: every row was there at the first poll (the direct
	// path writes before answering), so the drain time is zero.
	if !lastAccepted.IsZero() && grewAt.After(lastAccepted) {
		res.DrainS = grewAt.Sub(lastAccepted).Seconds()
	}
	if res.Rows, res.Distinct, err = src.Distinct(ctx, c.cfg.Prefix); err != nil {
		return nil, err
	}
	res.Duplicates = res.Rows - res.Distinct
	present := &IDSet{}
	err = src.IDs(ctx, c.cfg.Prefix, func(id string) {
		n, err := strconv.ParseInt(strings.TrimPrefix(id, c.cfg.Prefix+"-"), 10, 64)
		if err != nil || n < 0 {
			res.Foreign++
			return
		}
		present.Add(n)
	})
	if err != nil {
		return nil, err
	}
	var lost, extra []int64
	res.Lost, lost = accepted.Minus(present, 10)
	var notAccepted []int64
	_, notAccepted = present.Minus(accepted, 1<<62)
	for _, n := range notAccepted {
		if unknown.Has(n) {
			res.UnknownOutcome++
			continue
		}
		res.Unexpected++
		if len(extra) < 10 {
			extra = append(extra, n)
		}
	}
	res.LostSample, res.UnexpectedSample = ids(c.cfg.Prefix, lost), ids(c.cfg.Prefix, extra)
	res.OK = res.Lost == 0 && res.Duplicates == 0 && res.Unexpected == 0
	return res, nil
}

// drain polls the row count until it is at least the accepted count and
// unchanged since the previous poll, or the drain timeout passes. It
// returns when the count last grew (zero if it never grew after the first
// poll).
func (c *Checker) drain(ctx context.Context, src rowSource, res *CheckResult) (time.Time, error) {
	deadline := time.Now().Add(c.cfg.DrainTimeout)
	last, grewAt := int64(-1), time.Time{}
	for {
		n, err := src.Count(ctx, c.cfg.Prefix)
		if err != nil {
			return grewAt, err
		}
		now := time.Now()
		if n != last {
			if last >= 0 {
				grewAt = now
			}
			last = n
		} else if n >= res.Accepted {
			res.Drained = true
			return grewAt, nil
		}
		if now.After(deadline) {
			c.log.Warn("drain timeout: rows still short of accepted", zap.Int64("rows", n), zap.Int64("accepted", res.Accepted))
			return grewAt, nil
		}
		select {
		case <-ctx.Done():
			return grewAt, ctx.Err()
		case <-time.After(c.cfg.Poll):
		}
	}
}

func ids(prefix string, ns []int64) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = ID(prefix, n)
	}
	return out
}
