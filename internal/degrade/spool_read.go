package degrade

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
)

// Entry is one record read from the spool.
type Entry struct {
	Data []byte
	Pos  Position // just after the record
	Size int64    // bytes on disk
}

// Next returns the next record after the last one returned, reading only
// what has been fsynced. It reports false when there is nothing more for
// now (wait on Appended). Corruption in the middle of a segment is skipped
// (logged and counted): the reader scans forward to the next record that
// verifies, so a bad sector never wedges the spool.
func (s *Spool) Next() (Entry, bool) {
	for {
		s.mu.Lock()
		active, synced := s.active, s.synced
		next := uint64(0)
		for _, seg := range s.segments {
			if seg > s.rseg {
				next = seg
				break
			}
		}
		s.mu.Unlock()
		limit := synced
		if s.rseg != active {
			limit = fileSize(s.path(s.rseg))
		}
		if s.roff >= limit {
			if s.rseg == active || next == 0 {
				return Entry{}, false
			}
			s.closeReader()
			s.rseg, s.roff = next, 0
			continue
		}
		e, ok := s.readAt(limit)
		if ok {
			return e, true
		}
	}
}

// readAt reads the record at the reader's offset, below limit. On a record
// that does not verify it skips ahead and reports false.
func (s *Spool) readAt(limit int64) (Entry, bool) {
	if s.rfile == nil {
		f, err := os.Open(s.path(s.rseg))
		if err != nil {
			s.log.Error("spool: cannot open segment; skipping it", zap.String("segment", segName(s.rseg)), zap.Error(err))
			s.skip(limit - s.roff)
			s.roff = limit
			return Entry{}, false
		}
		s.rfile = f
	}
	f := s.rfile
	data, size, ok := readRecordAt(f, s.roff, limit)
	if !ok {
		to := resync(f, s.roff+1, limit)
		s.log.Error("spool: corrupt record skipped", zap.String("segment", segName(s.rseg)),
			zap.Int64("offset", s.roff), zap.Int64("skipped_bytes", to-s.roff))
		s.skip(to - s.roff)
		s.roff = to
		return Entry{}, false
	}
	s.roff += size
	return Entry{Data: data, Pos: Position{Segment: s.rseg, Offset: s.roff}, Size: size}, true
}

// readRecordAt reads and verifies the record at off, ending at most at limit.
func readRecordAt(f *os.File, off, limit int64) ([]byte, int64, bool) {
	var h [headerLen]byte
	if off+headerLen > limit {
		return nil, 0, false
	}
	if _, err := f.ReadAt(h[:], off); err != nil {
		return nil, 0, false
	}
	size := int64(binary.BigEndian.Uint32(h[0:4]))
	if size > maxRecord || off+headerLen+size > limit {
		return nil, 0, false
	}
	data := make([]byte, size)
	if _, err := f.ReadAt(data, off+headerLen); err != nil {
		return nil, 0, false
	}
	if recordCRC(h[0:4], data) != binary.BigEndian.Uint32(h[4:8]) {
		return nil, 0, false
	}
	return data, headerLen + size, true
}

// resync finds the first offset in [from, limit) where a record verifies,
// or limit. A random position verifies with probability 2^-32.
func resync(f *os.File, from, limit int64) int64 {
	for off := from; off+headerLen <= limit; off++ {
		if _, _, ok := readRecordAt(f, off, limit); ok {
			return off
		}
	}
	return limit
}

// skip accounts for bytes lost to corruption.
func (s *Spool) skip(n int64) {
	s.m.corrupt.Add(float64(n))
	s.mu.Lock()
	s.used = max(s.used-n, 0)
	s.mu.Unlock()
}

func (s *Spool) closeReader() {
	if s.rfile != nil {
		s.rfile.Close()
		s.rfile = nil
	}
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// Commit releases a record returned by Next, once it is safely elsewhere.
// Records must be committed in the order Next returned them. Segments
// wholly before it are deleted; the position is saved at most every 200 ms
// (and by Close), so a crash replays at most that much again.
func (s *Spool) Commit(e Entry) {
	s.mu.Lock()
	s.used = max(s.used-e.Size, 0)
	s.count = max(s.count-1, 0)
	for len(s.segments) > 1 && s.segments[0] < e.Pos.Segment {
		_ = os.Remove(s.path(s.segments[0]))
		s.segments = s.segments[1:]
	}
	s.mu.Unlock()
	s.m.replayed.Inc()
	s.lastPos = e.Pos
	if time.Since(s.cursorT) > 200*time.Millisecond {
		s.saveCursor()
	}
}

// Close saves the read position and closes the reader. Call it after the
// reader stopped and Run returned.
func (s *Spool) Close() {
	s.saveCursor()
	s.closeReader()
}

const cursorFile = "cursor"

// saveCursor writes the read position atomically: segment, offset, CRC.
func (s *Spool) saveCursor() {
	s.cursorT = time.Now()
	var b [20]byte
	binary.BigEndian.PutUint64(b[0:8], s.lastPos.Segment)
	binary.BigEndian.PutUint64(b[8:16], uint64(s.lastPos.Offset))
	binary.BigEndian.PutUint32(b[16:20], crc32.Checksum(b[:16], castagnoli))
	tmp := filepath.Join(s.opts.Dir, cursorFile+".tmp")
	if err := os.WriteFile(tmp, b[:], 0o644); err != nil {
		s.log.Warn("spool: cannot save the read position", zap.Error(err))
		return
	}
	if err := os.Rename(tmp, filepath.Join(s.opts.Dir, cursorFile)); err != nil {
		s.log.Warn("spool: cannot save the read position", zap.Error(err))
	}
}

// loadCursor reads the saved position; a missing or damaged cursor means
// the start of the oldest segment (records are then replayed again, which
// the queue and the sink deduplicate).
func (s *Spool) loadCursor() Position {
	b, err := os.ReadFile(filepath.Join(s.opts.Dir, cursorFile))
	if err != nil || len(b) != 20 || crc32.Checksum(b[:16], castagnoli) != binary.BigEndian.Uint32(b[16:20]) {
		return Position{}
	}
	return Position{Segment: binary.BigEndian.Uint64(b[0:8]), Offset: int64(binary.BigEndian.Uint64(b[8:16]))}
}
