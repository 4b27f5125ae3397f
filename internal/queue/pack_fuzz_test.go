package queue_test

import (
	"fmt"
	"testing"

	"github.com/levee-dev/levee/internal/event"
	"github.com/levee-dev/levee/internal/queue"
)

// FuzzDecodePack checks that DecodePack never panics, that every record it
// reports as good obeys the event rules, and that the good records survive
// a second trip through PackWriter unchanged. The seed corpus is in
// testdata/fuzz/FuzzDecodePack (valid packs, packs with bad records, and
// unreadable frames).
//
// Each input is decoded as given and once more with its last four bytes
// replaced by the right CRC-32C: almost every mutation breaks the checksum,
// and without the resealed copy the fuzzer would never get past it.
func FuzzDecodePack(f *testing.F) {
	e := edgeEvents()
	for _, evs := range [][]event.Event{nil, e[:1], e[:3]} {
		data, _ := pack(evs)
		f.Add(data)
	}
	f.Add(rawPack(queue.PackVersion, 3, goodBody("g1"), body("id", "a b", usNow, usNow, `{}`), goodBody("g2")))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecodePack(t, b)
		if len(b) >= 4 {
			checkDecodePack(t, seal(append([]byte(nil), b[:len(b)-4]...)))
		}
	})
}

func checkDecodePack(t *testing.T, b []byte) {
	t.Helper()
	recs, err := queue.DecodePack(b)
	if err != nil {
		if recs != nil {
			t.Fatalf("records returned with error %v", err)
		}
		return
	}
	var w queue.PackWriter
	var good []event.Event
	for i, r := range recs {
		if r.Err != nil {
			continue
		}
		if err := r.Event.Check(); err != nil {
			t.Fatalf("record %d has no Err but breaks the event rules: %v", i, err)
		}
		good = append(good, r.Event)
		w.Add(&r.Event)
	}
	data, _ := w.Finish()
	again, err := queue.DecodePack(data)
	if err != nil {
		t.Fatalf("re-encoded good records do not decode: %v", err)
	}
	if len(again) != len(good) {
		t.Fatalf("re-encoded %d good records, decoded %d", len(good), len(again))
	}
	for i, r := range again {
		if r.Err != nil {
			t.Fatalf("re-encoded record %d: %v", i, r.Err)
		}
		if err := sameEvent(good[i], r.Event); err != nil {
			t.Fatalf("re-encoded record %d: %v", i, err)
		}
	}
}

func sameEvent(a, b event.Event) error {
	switch {
	case a.ID != b.ID:
		return fmt.Errorf("id %q != %q", a.ID, b.ID)
	case a.Type != b.Type:
		return fmt.Errorf("type %q != %q", a.Type, b.Type)
	case !a.TS.Equal(b.TS):
		return fmt.Errorf("ts %s != %s", a.TS, b.TS)
	case !a.ReceivedAt.Equal(b.ReceivedAt):
		return fmt.Errorf("received_at %s != %s", a.ReceivedAt, b.ReceivedAt)
	case string(a.Data) != string(b.Data):
		return fmt.Errorf("data %q != %q", a.Data, b.Data)
	}
	return nil
}
