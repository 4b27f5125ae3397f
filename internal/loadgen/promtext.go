package loadgen

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Exposition is one parsed /metrics page (Prometheus text format).
type Exposition map[string]*dto.MetricFamily

// ParseExposition parses the text exposition format.
func ParseExposition(r io.Reader) (Exposition, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("loadgen: parse metrics: %w", err)
	}
	return Exposition(fams), nil
}

// Scrape fetches and parses http://addr/metrics.
func Scrape(ctx context.Context, c *http.Client, addr string) (Exposition, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("loadgen: scrape %s: %w", addr, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("loadgen: scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("loadgen: scrape %s: status %d", addr, resp.StatusCode)
	}
	return ParseExposition(resp.Body)
}

// Value returns the sum of the gauge, counter or untyped series of name
// whose labels include every pair of match ("k1", "v1", "k2", "v2", …),
// and whether any such series exists.
func (e Exposition) Value(name string, match ...string) (float64, bool) {
	f, ok := e[name]
	if !ok {
		return 0, false
	}
	sum, found := 0.0, false
	for _, m := range f.GetMetric() {
		if !hasLabels(m, match) {
			continue
		}
		switch {
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		default:
			continue
		}
		found = true
	}
	return sum, found
}

func hasLabels(m *dto.Metric, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		ok := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == match[i] && lp.GetValue() == match[i+1] {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// Bucket is one cumulative histogram bucket: Count observations ≤ UpperBound.
type Bucket struct {
	UpperBound float64 `json:"le"`
	Count      float64 `json:"count"`
}

// Buckets returns the cumulative buckets of histogram name, summed over
// its series, with the +Inf bucket last.
func (e Exposition) Buckets(name string) ([]Bucket, bool) {
	f, ok := e[name]
	if !ok || f.GetType() != dto.MetricType_HISTOGRAM {
		return nil, false
	}
	byLE := map[float64]float64{}
	total := 0.0
	for _, m := range f.GetMetric() {
		h := m.GetHistogram()
		for _, b := range h.GetBucket() {
			byLE[b.GetUpperBound()] += float64(b.GetCumulativeCount())
		}
		total += float64(h.GetSampleCount())
	}
	byLE[math.Inf(1)] = total
	return sortedBuckets(byLE), true
}

func sortedBuckets(byLE map[float64]float64) []Bucket {
	bs := make([]Bucket, 0, len(byLE))
	for le, c := range byLE {
		bs = append(bs, Bucket{UpperBound: le, Count: c})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].UpperBound < bs[j].UpperBound })
	return bs
}

// AddBuckets returns the bucket-wise sum of a and b (histograms of several
// processes with the same bounds).
func AddBuckets(a, b []Bucket) []Bucket {
	byLE := map[float64]float64{}
	for _, x := range a {
		byLE[x.UpperBound] += x.Count
	}
	for _, x := range b {
		byLE[x.UpperBound] += x.Count
	}
	return sortedBuckets(byLE)
}

// SubBuckets returns the observations made between two scrapes of the
// same histogram: later minus earlier, bucket by bucket.
func SubBuckets(later, earlier []Bucket) []Bucket {
	before := map[float64]float64{}
	for _, b := range earlier {
		before[b.UpperBound] = b.Count
	}
	out := make([]Bucket, len(later))
	for i, b := range later {
		out[i] = Bucket{UpperBound: b.UpperBound, Count: max(b.Count-before[b.UpperBound], 0)}
	}
	return out
}

// BucketQuantile estimates the q-quantile (0..1) of cumulative buckets by
// linear interpolation inside the bucket that holds it, as PromQL's
// histogram_quantile does. It returns NaN when there are no observations;
// a quantile in the +Inf bucket is reported as the largest finite bound.
func BucketQuantile(q float64, bs []Bucket) float64 {
	if len(bs) == 0 || bs[len(bs)-1].Count == 0 {
		return math.NaN()
	}
	rank := q * bs[len(bs)-1].Count
	lower, below := 0.0, 0.0
	for _, b := range bs {
		if b.Count >= rank {
			if math.IsInf(b.UpperBound, 1) {
				return lower
			}
			in := b.Count - below
			if in <= 0 {
				return b.UpperBound
			}
			return lower + (b.UpperBound-lower)*(rank-below)/in
		}
		lower, below = b.UpperBound, b.Count
	}
	return lower
}
