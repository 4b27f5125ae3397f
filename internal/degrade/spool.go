// Package degrade is Levee's degraded path: the on-disk spool that absorbs
// what the queue cannot take, its replayer, the modes of operation with
// hysteresis, and the sink circuit breaker.
package degrade

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Spool errors.
var (
	ErrSpoolFull   = errors.New("degrade: spool full")
	ErrSpoolClosed = errors.New("degrade: spool closed")
)

// Record framing: a segment file is a sequence of
//
//	length uint32 (big endian) | crc uint32 = CRC-32C(length bytes ‖ data) | data
//
// A record whose length or checksum does not verify ends a torn tail (cut
// off at open) or marks corruption in the middle of a segment, which the
// reader skips by scanning forward to the next record that verifies.
const (
	headerLen = 8
	maxRecord = 64 << 20
	segSuffix = ".spool"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SpoolOptions configure a Spool.
type SpoolOptions struct {
	Dir          string
	MaxBytes     int64         // appends beyond this fail with ErrSpoolFull
	SegmentBytes int64         // a new segment file starts past this size
	SyncInterval time.Duration // group commit: how long the writer gathers appends before one fsync
}

// Position is a place in the spool: a segment and an offset in it.
type Position struct {
	Segment uint64
	Offset  int64
}

// Spool is a durable, bounded FIFO of records on local disk. Append returns
// once the record is fsynced, and many concurrent appends share one fsync
// (group commit). A single reader consumes records in order with Next and
// releases them with Commit; records are removed, a segment at a time, only
// once committed. The read position survives restarts (a crash may replay a
// few committed records again; the queue and the sink deduplicate them).
type Spool struct {
	opts SpoolOptions
	log  *zap.Logger
	m    *spoolMetrics

	mu       sync.Mutex
	pending  []*appendReq
	wake     chan struct{} // tells the writer there is work
	closed   bool
	used     int64    // bytes of records not yet committed, reserved at Append
	count    int64    // records not yet committed
	active   uint64   // segment being written
	synced   int64    // bytes of the active segment known durable
	segments []uint64 // existing segments, oldest first
	appended chan struct{}

	file *os.File      // active segment, owned by the writer
	w    *bufio.Writer // buffers the writer's records to file

	// reader state, owned by the reader
	rseg    uint64
	roff    int64
	rfile   *os.File
	lastPos Position // committed position, persisted in the cursor file
	cursorT time.Time
}

type appendReq struct {
	data []byte
	done chan error
}

// OpenSpool opens (or creates) the spool in opts.Dir. It cuts off a torn
// tail left by a crash, keeps every record before it, and resumes reading
// from the saved position.
func OpenSpool(opts SpoolOptions, log *zap.Logger, reg prometheus.Registerer) (*Spool, error) {
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = 64 << 20
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("degrade: spool: %w", err)
	}
	s := &Spool{opts: opts, log: log.With(zap.String("component", "spool")),
		wake: make(chan struct{}, 1), appended: make(chan struct{})}
	if err := s.recover(); err != nil {
		return nil, err
	}
	m, err := newSpoolMetrics(reg, s)
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

func segName(n uint64) string { return fmt.Sprintf("%020d%s", n, segSuffix) }

func (s *Spool) path(n uint64) string { return filepath.Join(s.opts.Dir, segName(n)) }

// recover lists the segments, truncates the last one after its last valid
// record, loads the cursor and counts what is left to read.
func (s *Spool) recover() error {
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("degrade: spool: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segSuffix)
		if n, err := strconv.ParseUint(name, 10, 64); ok && err == nil {
			s.segments = append(s.segments, n)
		}
	}
	sort.Slice(s.segments, func(i, j int) bool { return s.segments[i] < s.segments[j] })
	s.lastPos = s.loadCursor()
	// Segments entirely before the cursor were consumed before a crash.
	for len(s.segments) > 0 && s.segments[0] < s.lastPos.Segment {
		_ = os.Remove(s.path(s.segments[0]))
		s.segments = s.segments[1:]
	}
	if len(s.segments) == 0 {
		s.segments = []uint64{max(s.lastPos.Segment, 1)}
		s.lastPos = Position{Segment: s.segments[0]}
	}
	if s.lastPos.Segment < s.segments[0] {
		s.lastPos = Position{Segment: s.segments[0]}
	}
	s.active = s.segments[len(s.segments)-1]
	f, err := os.OpenFile(s.path(s.active), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("degrade: spool: %w", err)
	}
	end, records, err := scanValid(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("degrade: spool: %w", err)
	}
	if size := fileSize(s.path(s.active)); size > end {
		// A bad record followed by good ones is corruption, which the
		// reader skips; only a bad region running to the end of the file
		// is a torn tail from a crash, and only that is cut off.
		if next := resync(f, end+1, size); next < size {
			s.log.Error("spool: corrupt region in the last segment; the reader will skip it",
				zap.String("segment", segName(s.active)), zap.Int64("offset", end), zap.Int64("bytes", next-end))
			_, more, _ := scanFrom(f, next)
			end, records = size, records+more
		} else {
			s.log.Warn("spool: cutting off a torn tail left by a crash",
				zap.String("segment", segName(s.active)), zap.Int64("kept_bytes", end), zap.Int64("cut_bytes", size-end))
			if err := f.Truncate(end); err != nil {
				f.Close()
				return fmt.Errorf("degrade: spool: truncate torn tail: %w", err)
			}
		}
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("degrade: spool: %w", err)
	}
	s.file, s.synced = f, end
	// Usage: everything after the cursor. Record counts of older segments
	// are read cheaply from their frames.
	for _, seg := range s.segments {
		size, n := end, records
		if seg != s.active {
			size, n = s.segmentStats(seg)
		}
		if seg == s.lastPos.Segment {
			skipped, skippedN := s.prefixStats(seg, s.lastPos.Offset)
			size -= skipped
			n -= skippedN
		}
		s.used += max(size, 0)
		s.count += max(n, 0)
	}
	s.rseg, s.roff = s.lastPos.Segment, s.lastPos.Offset
	return nil
}

// scanValid returns the end offset of the last record that verifies in a
// file read from the start, and the number of records before it.
func scanValid(f *os.File) (int64, int64, error) { return scanFrom(f, 0) }

// scanFrom is scanValid starting at offset from.
func scanFrom(f *os.File, from int64) (int64, int64, error) {
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return 0, 0, err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	off, n := from, int64(0)
	for {
		size, err := readRecord(r, nil)
		if err != nil {
			return off, n, nil
		}
		off += int64(size)
		n++
	}
}

func (s *Spool) segmentStats(seg uint64) (int64, int64) {
	f, err := os.Open(s.path(seg))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	st, _ := f.Stat()
	_, n, _ := scanValid(f)
	return st.Size(), n
}

func (s *Spool) prefixStats(seg uint64, off int64) (int64, int64) {
	if off == 0 {
		return 0, 0
	}
	f, err := os.Open(s.path(seg))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	r := bufio.NewReader(io.LimitReader(f, off))
	var n int64
	for {
		if _, err := readRecord(r, nil); err != nil {
			return off, n
		}
		n++
	}
}

// readRecord reads one record; with buf nil it only verifies and skips it.
// It returns the record's size on disk and its data.
func readRecord(r *bufio.Reader, buf *[]byte) (int, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, err
	}
	size := binary.BigEndian.Uint32(h[0:4])
	if size > maxRecord {
		return 0, errCorrupt
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return 0, err
	}
	crc := recordCRC(h[0:4], data)
	if crc != binary.BigEndian.Uint32(h[4:8]) {
		return 0, errCorrupt
	}
	if buf != nil {
		*buf = data
	}
	return headerLen + int(size), nil
}

var errCorrupt = errors.New("degrade: spool record corrupt")

// recordCRC is a record's checksum: CRC-32C of its length bytes and data.
func recordCRC(length, data []byte) uint32 {
	return crc32.Update(crc32.Checksum(length, castagnoli), castagnoli, data)
}

func header(data []byte) [headerLen]byte {
	var h [headerLen]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(len(data)))
	binary.BigEndian.PutUint32(h[4:8], recordCRC(h[0:4], data))
	return h
}

func writeRecord(w *bufio.Writer, data []byte) error {
	h := header(data)
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// Append stores data durably. It returns once the record is fsynced, or
// ErrSpoolFull at once when the spool has no room for it.
func (s *Spool) Append(ctx context.Context, data []byte) error {
	if len(data) > maxRecord {
		return fmt.Errorf("degrade: spool: record of %d bytes exceeds %d", len(data), maxRecord)
	}
	size := int64(headerLen + len(data))
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrSpoolClosed
	}
	if s.used+size > s.opts.MaxBytes {
		s.mu.Unlock()
		s.m.full.Inc()
		return ErrSpoolFull
	}
	s.used += size
	req := &appendReq{data: data, done: make(chan error, 1)}
	s.pending = append(s.pending, req)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	// The record is on its way to disk; waiting for the fsync is not
	// abandoned when ctx ends, because a 202 depends on it.
	err := <-req.done
	if err != nil {
		s.mu.Lock()
		s.used -= size
		s.mu.Unlock()
	}
	return err
}

// Run is the writer: it gathers pending appends, writes them, fsyncs once
// and releases them, until ctx ends; then it finishes what is pending,
// syncs and closes the active segment.
func (s *Spool) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			s.closed = true
			s.mu.Unlock()
			s.flush()
			return s.file.Close()
		case <-s.wake:
		}
		if s.opts.SyncInterval > 0 {
			select {
			case <-time.After(s.opts.SyncInterval):
			case <-ctx.Done():
			}
		}
		s.flush()
	}
}

// flush writes every pending record and fsyncs them together.
func (s *Spool) flush() {
	s.mu.Lock()
	reqs := s.pending
	s.pending = nil
	s.mu.Unlock()
	if len(reqs) == 0 {
		return
	}
	start := time.Now()
	// Records go through a small buffered writer: a group of thousands of
	// appends is never copied into one buffer of its own size.
	if s.w == nil {
		s.w = bufio.NewWriterSize(s.file, 256<<10)
	}
	s.w.Reset(s.file)
	var written int
	var err error
	for _, r := range reqs {
		if err = writeRecord(s.w, r.data); err != nil {
			break
		}
		written += headerLen + len(r.data)
	}
	if err == nil {
		err = s.w.Flush()
	}
	if err == nil {
		err = s.file.Sync()
	}
	if err != nil {
		// Nothing of this group is acknowledged; cut the file back so a
		// partial write cannot be mistaken for records.
		s.log.Error("spool write failed", zap.Error(err))
		_ = s.file.Truncate(s.synced)
		_, _ = s.file.Seek(s.synced, io.SeekStart)
		s.m.errors.Inc()
		err = fmt.Errorf("degrade: spool: %w", err)
	}
	s.m.fsyncSeconds.Observe(time.Since(start).Seconds())
	s.m.groupRecords.Observe(float64(len(reqs)))
	s.mu.Lock()
	if err == nil {
		s.synced += int64(written)
		s.count += int64(len(reqs))
		s.m.appended.Add(float64(len(reqs)))
		close(s.appended)
		s.appended = make(chan struct{})
	}
	rotate := err == nil && s.synced >= s.opts.SegmentBytes
	s.mu.Unlock()
	for _, r := range reqs {
		r.done <- err
	}
	if rotate {
		s.rotate()
	}
}

// rotate starts a new active segment. Called by the writer only.
func (s *Spool) rotate() {
	next := s.active + 1
	f, err := os.OpenFile(s.path(next), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		s.log.Error("spool: cannot start a new segment; continuing in the current one", zap.Error(err))
		return
	}
	old := s.file
	s.mu.Lock()
	s.active, s.synced, s.file = next, 0, f
	s.segments = append(s.segments, next)
	s.mu.Unlock()
	_ = old.Close()
	syncDir(s.opts.Dir)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// Len returns the records and bytes not yet committed.
func (s *Spool) Len() (records, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count, s.used
}

// Usage returns the fraction of MaxBytes in use.
func (s *Spool) Usage() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(s.used) / float64(max(s.opts.MaxBytes, 1))
}

// Appended returns a channel closed at the next successful append.
func (s *Spool) Appended() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appended
}
