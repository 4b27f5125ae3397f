package degrade

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openRunning opens a spool and runs its writer until the test ends (or
// stop is called, which also closes the spool).
func openRunning(t *testing.T, opts SpoolOptions) (*Spool, func()) {
	t.Helper()
	s, err := OpenSpool(opts, zaptest.NewLogger(t), prometheus.NewRegistry())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			s.Close()
		})
	}
	t.Cleanup(stop)
	return s, stop
}

func opts(dir string) SpoolOptions {
	return SpoolOptions{Dir: dir, MaxBytes: 64 << 20, SegmentBytes: 1 << 20}
}

func record(i int) []byte { return []byte(fmt.Sprintf("record-%06d:%0100d", i, i)) }

// drain reads and commits everything available.
func drain(t *testing.T, s *Spool) []string {
	t.Helper()
	var out []string
	for {
		e, ok := s.Next()
		if !ok {
			return out
		}
		out = append(out, string(e.Data))
		s.Commit(e)
	}
}

func TestAppendReadCommit(t *testing.T) {
	s, _ := openRunning(t, opts(t.TempDir()))
	var wg sync.WaitGroup
	for i := range 500 {
		wg.Go(func() { require.NoError(t, s.Append(context.Background(), record(i))) })
	}
	wg.Wait()
	n, bytes := s.Len()
	require.EqualValues(t, 500, n)
	require.Positive(t, bytes)
	got := drain(t, s)
	require.Len(t, got, 500)
	sort.Strings(got)
	for i, g := range got {
		require.Equal(t, string(record(i)), g)
	}
	n, bytes = s.Len()
	require.Zero(t, n)
	require.Zero(t, bytes)
}

// Many concurrent appends share fsyncs.
func TestGroupCommit(t *testing.T) {
	o := opts(t.TempDir())
	o.SyncInterval = 2 * time.Millisecond
	s, _ := openRunning(t, o)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() { require.NoError(t, s.Append(context.Background(), record(i))) })
	}
	wg.Wait()
	groups := testutil.CollectAndCount(s.m.groupRecords)
	require.Equal(t, 1, groups)
	fsyncs := histogramCount(t, s.m.groupRecords)
	t.Logf("200 appends, %d fsyncs", fsyncs)
	require.Less(t, fsyncs, uint64(100), "appends share fsyncs")
}

// What was appended before a restart is read after it, from where reading
// stopped.
func TestRestartResumes(t *testing.T) {
	dir := t.TempDir()
	s, stop := openRunning(t, opts(dir))
	for i := range 10 {
		require.NoError(t, s.Append(context.Background(), record(i)))
	}
	for range 4 {
		e, ok := s.Next()
		require.True(t, ok)
		s.Commit(e)
	}
	stop()

	s2, _ := openRunning(t, opts(dir))
	n, _ := s2.Len()
	require.EqualValues(t, 6, n)
	got := drain(t, s2)
	require.Equal(t, []string{string(record(4)), string(record(5)), string(record(6)),
		string(record(7)), string(record(8)), string(record(9))}, got)
}

// A crash in the middle of a write leaves a torn tail: it is cut off at
// open, the records before it are kept, and appending continues.
func TestTornTailIsCutOff(t *testing.T) {
	dir := t.TempDir()
	s, stop := openRunning(t, opts(dir))
	for i := range 5 {
		require.NoError(t, s.Append(context.Background(), record(i)))
	}
	stop()
	seg := filepath.Join(dir, segName(1))
	full := appendRecord(nil, record(99))
	f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.Write(full[:len(full)/2]) // half a record: the crash
	require.NoError(t, err)
	require.NoError(t, f.Close())

	s2, _ := openRunning(t, opts(dir))
	require.NoError(t, s2.Append(context.Background(), record(5)))
	got := drain(t, s2)
	require.Len(t, got, 6)
	require.Equal(t, string(record(5)), got[5])
}

// A corrupt record in the middle of a segment is skipped, counted, and
// does not stop the records after it: the spool is never wedged.
func TestCorruptionIsSkipped(t *testing.T) {
	dir := t.TempDir()
	s, stop := openRunning(t, opts(dir))
	for i := range 10 {
		require.NoError(t, s.Append(context.Background(), record(i)))
	}
	stop()
	seg := filepath.Join(dir, segName(1))
	b, err := os.ReadFile(seg)
	require.NoError(t, err)
	recLen := len(appendRecord(nil, record(0)))
	b[5*recLen+headerLen+3] ^= 0xff // a bit rot inside record 5's data
	require.NoError(t, os.WriteFile(seg, b, 0o644))

	s2, _ := openRunning(t, opts(dir))
	got := drain(t, s2)
	require.Len(t, got, 9)
	require.NotContains(t, got, string(record(5)))
	require.Equal(t, string(record(9)), got[8])
	require.Equal(t, float64(recLen), testutil.ToFloat64(s2.m.corrupt))
	// And it keeps working.
	require.NoError(t, s2.Append(context.Background(), record(10)))
	require.Equal(t, []string{string(record(10))}, drain(t, s2))
}

// A full spool refuses appends at once; room comes back as records are
// committed.
func TestFullSpoolRefuses(t *testing.T) {
	o := opts(t.TempDir())
	recLen := int64(len(appendRecord(nil, record(0))))
	o.MaxBytes = 3 * recLen
	s, _ := openRunning(t, o)
	for i := range 3 {
		require.NoError(t, s.Append(context.Background(), record(i)))
	}
	require.ErrorIs(t, s.Append(context.Background(), record(3)), ErrSpoolFull)
	require.InDelta(t, 1.0, s.Usage(), 0.001)
	e, ok := s.Next()
	require.True(t, ok)
	s.Commit(e)
	require.NoError(t, s.Append(context.Background(), record(3)))
	require.Equal(t, 1.0, testutil.ToFloat64(s.m.full))
}

// Segments rotate at SegmentBytes and are deleted once consumed.
func TestSegmentsRotateAndAreDeleted(t *testing.T) {
	dir := t.TempDir()
	o := opts(dir)
	o.SegmentBytes = 4096
	s, stop := openRunning(t, o)
	for i := range 200 {
		require.NoError(t, s.Append(context.Background(), record(i)))
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	require.Greater(t, len(segs), 3)
	got := drain(t, s)
	require.Len(t, got, 200)
	for i, g := range got {
		require.Equal(t, string(record(i)), g, "one writer: order is kept")
	}
	stop()
	segs, _ = filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	require.LessOrEqual(t, len(segs), 2, "consumed segments are deleted")

	s2, _ := openRunning(t, o)
	n, _ := s2.Len()
	require.Zero(t, n)
	require.Empty(t, drain(t, s2))
}

// Without Close (a kill -9), the reader resumes from the last saved
// position: nothing uncommitted is lost, a few records may come again.
func TestKillReplaysAtMostSomeCommitted(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpool(opts(dir), zaptest.NewLogger(t), prometheus.NewRegistry())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	for i := range 20 {
		require.NoError(t, s.Append(context.Background(), record(i)))
	}
	for range 12 {
		e, ok := s.Next()
		require.True(t, ok)
		s.Commit(e)
	}
	cancel()
	<-done
	s.closeReader() // no Close: the position may not be saved

	s2, _ := openRunning(t, opts(dir))
	got := drain(t, s2)
	require.GreaterOrEqual(t, len(got), 8)
	require.Equal(t, string(record(19)), got[len(got)-1])
	for i := 12; i < 20; i++ {
		require.Contains(t, got, string(record(i)))
	}
}

func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	h.Collect(ch)
	var m = new(dtoMetric)
	require.NoError(t, (<-ch).Write(m))
	return m.GetHistogram().GetSampleCount()
}

type dtoMetric = dto.Metric

// appendRecord frames data as the writer does, for tests that write
// segment files by hand.
func appendRecord(dst, data []byte) []byte {
	h := header(data)
	return append(append(dst, h[:]...), data...)
}
