package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/levee-dev/levee/internal/backpressure"
	"github.com/levee-dev/levee/internal/batch"
	"github.com/levee-dev/levee/internal/degrade"
	"github.com/levee-dev/levee/internal/event"
	"github.com/levee-dev/levee/internal/queue"
	"github.com/levee-dev/levee/internal/sink"
)

// reasonUnbatched labels batches of one message, written alone because
// optimization.batching is off.
const reasonUnbatched batch.Reason = "unbatched"

// Dead-letter reasons; each is also the last token of the DLQ subject.
const (
	dlqUndecodable  = "undecodable"   // the message cannot be read at all
	dlqInvalidEvent = "invalid_event" // one event of a pack breaks the event rules
	dlqSinkRejected = "sink_rejected" // the sink refused the event on every delivery
)

// delivery is one fetched message and the count of its events not yet settled.
type delivery struct {
	msg        jetstream.Msg
	deliveries uint64
	pending    atomic.Int32
	failed     atomic.Bool
	delay      atomic.Int64 // nak delay requested by a failure, if longer than worker.nak_delay
	touched    atomic.Int64 // UnixNano of the fetch or the last InProgress
}

// process decodes a message and hands its events to the batcher. It runs
// in the decode pool. Events that cannot be read go to the DLQ on their own;
// the rest of the message proceeds.
func (w *Worker) process(d *delivery) {
	if md, err := d.msg.Metadata(); err == nil {
		d.deliveries = md.NumDelivered
	}
	recs, err := queue.DecodeMessage(d.msg.Headers(), d.msg.Data())
	if err != nil {
		w.deadLetterMessage(d, err)
		return
	}
	if len(recs) == 0 {
		w.track.remove(d)
		_ = d.msg.Ack()
		return
	}
	d.pending.Store(int32(len(recs)))
	w.outstanding.Add(int64(len(recs)))
	w.perMsg.Store((w.perMsg.Load()*7 + int64(len(recs))*16) / 8)

	good := make([]item, 0, len(recs))
	for i, r := range recs {
		if r.Err != nil {
			w.settle(d, w.deadLetterRecord(d, i, r))
			continue
		}
		good = append(good, item{ev: r.Event, d: d})
	}
	if len(good) == 0 {
		return
	}
	if !w.settings.Load().Batching {
		bytes := 0
		for i := range good {
			bytes += good[i].ev.Size()
		}
		w.single <- batch.Batch[item]{Items: good, Bytes: bytes, Reason: reasonUnbatched}
		return
	}
	for _, it := range good {
		if err := w.batcher.Add(w.writeCtx, it, it.ev.Size()); err != nil {
			// The batcher kept the item; its final flush carries it.
			return
		}
	}
}

// writeBatch writes one batch in the write slot tok and settles its events.
// The write's latency and outcome feed the sink limiter. A batch refused
// for its content is split to find the events at fault; a batch refused
// because the sink is unavailable is nak'ed whole, to be redelivered.
func (w *Worker) writeBatch(b batch.Batch[item], tok backpressure.Token) {
	w.m.batchRows.Observe(float64(len(b.Items)))
	w.m.batchBytes.Observe(float64(b.Bytes))
	var took time.Duration
	err := w.breaker.Do(func() (err error) {
		took, err = w.writeItems(b.Items)
		return err
	})
	switch {
	case errors.Is(err, degrade.ErrBreakerOpen):
		// Not written: redeliver once the breaker may let writes through.
		tok.Release(backpressure.Ignore)
		for _, it := range b.Items {
			it.d.delay.Store(int64(w.breaker.OpenFor()))
		}
		w.settleAll(b.Items, false)
	case err == nil:
		tok.ReleaseRTT(took, backpressure.Success)
		w.settleAll(b.Items, true)
	case sink.IsDataError(err):
		tok.ReleaseRTT(took, backpressure.Ignore)
		w.log.Warn("sink refused a batch for its content; isolating the events at fault", zap.Int("rows", len(b.Items)), zap.Error(err))
		w.isolate(b.Items, err)
	default:
		tok.ReleaseRTT(took, backpressure.Dropped)
		w.log.Warn("sink write failed; batch will be redelivered", zap.Int("rows", len(b.Items)), zap.Error(err))
		w.settleAll(b.Items, false)
	}
}

// writeItems writes the events of items to the sink with a timeout and
// returns how long the write took.
func (w *Worker) writeItems(items []item) (time.Duration, error) {
	evs := make([]event.Event, len(items))
	for i := range items {
		evs[i] = items[i].ev
	}
	ctx, cancel := context.WithTimeout(w.writeCtx, w.opts.WriteTimeout)
	defer cancel()
	start := time.Now()
	n, err := w.sink.Write(ctx, evs)
	took := time.Since(start)
	if err != nil {
		kind := "unavailable"
		if sink.IsDataError(err) {
			kind = "data"
		}
		w.m.sinkErrors.WithLabelValues(kind).Inc()
		w.m.writeSeconds.WithLabelValues("error").Observe(took.Seconds())
		return took, err
	}
	w.m.writeSeconds.WithLabelValues("ok").Observe(took.Seconds())
	w.m.rows.WithLabelValues("inserted").Add(float64(n))
	w.m.rows.WithLabelValues("duplicate").Add(float64(len(evs) - n))
	w.written.Add(int64(len(evs)))
	now := time.Now()
	for i := range evs {
		w.m.lag.Observe(now.Sub(evs[i].ReceivedAt).Seconds())
	}
	return took, nil
}

// isolate bisects a batch the sink refused for its content: the halves that
// write are settled, and a single event that still fails is poison.
func (w *Worker) isolate(items []item, cause error) {
	if len(items) == 1 {
		w.poison(items[0], cause)
		return
	}
	mid := len(items) / 2
	for _, half := range [][]item{items[:mid], items[mid:]} {
		_, err := w.writeItems(half)
		switch {
		case err == nil:
			w.settleAll(half, true)
		case sink.IsDataError(err):
			w.isolate(half, err)
		default:
			w.settleAll(half, false)
		}
	}
}

// poison handles one event the sink refuses: it is retried with the message
// until the message has been delivered worker.max_deliver times, then it
// goes to the DLQ alone and the rest of its message is acknowledged.
func (w *Worker) poison(it item, cause error) {
	if it.d.deliveries < uint64(w.settings.Load().MaxDeliver) {
		w.settle(it.d, false)
		return
	}
	ok := w.deadLetter(it.d, it.ev.AppendJSON(nil), it.ev.ID, dlqSinkRejected, cause.Error())
	w.settle(it.d, ok)
}

func (w *Worker) settleAll(items []item, ok bool) {
	for _, it := range items {
		w.settle(it.d, ok)
	}
}

// settle records the outcome of one event of d. When the last event of the
// message is settled the message is acked, or nak'ed with delay if any of its
// events failed (the redelivery rewrites the others idempotently).
func (w *Worker) settle(d *delivery, ok bool) {
	if !ok {
		d.failed.Store(true)
	}
	w.outstanding.Add(-1)
	if d.pending.Add(-1) != 0 {
		return
	}
	w.track.remove(d)
	if d.failed.Load() {
		_ = d.msg.NakWithDelay(max(w.settings.Load().NakDelay, time.Duration(d.delay.Load())))
		w.m.messages.WithLabelValues("nakked").Inc()
	} else {
		_ = d.msg.Ack()
		w.m.messages.WithLabelValues("acked").Inc()
	}
	w.signalRoom()
}

// deadLetterMessage sends a message that cannot be read to the DLQ whole
// and acknowledges it; if the DLQ refuses it, the message is nak'ed instead.
func (w *Worker) deadLetterMessage(d *delivery, cause error) {
	id := "seq"
	if md, err := d.msg.Metadata(); err == nil {
		id = "seq-" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	w.track.remove(d)
	if w.deadLetter(d, d.msg.Data(), id, dlqUndecodable, cause.Error()) {
		_ = d.msg.Ack()
		w.m.messages.WithLabelValues("dead_lettered").Inc()
	} else {
		_ = d.msg.NakWithDelay(w.settings.Load().NakDelay)
		w.m.messages.WithLabelValues("nakked").Inc()
	}
	w.signalRoom()
}

// deadLetterRecord sends record i of a pack, which cannot be read, to the DLQ.
func (w *Worker) deadLetterRecord(d *delivery, i int, r queue.Record) bool {
	var seq uint64
	if md, err := d.msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	return w.deadLetter(d, r.Raw, fmt.Sprintf("seq-%d-%d", seq, i), dlqInvalidEvent, r.Err.Error())
}

// deadLetter publishes data to the DLQ stream with the reason in headers
// and waits for its PubAck.
func (w *Worker) deadLetter(d *delivery, data []byte, id, kind, reason string) bool {
	if len(reason) > 512 {
		reason = reason[:512]
	}
	h := nats.Header{
		queue.HeaderReason:    []string{kind + ": " + reason},
		"Levee-Subject":       []string{d.msg.Subject()},
		"Levee-Deliveries":    []string{strconv.FormatUint(d.deliveries, 10)},
		jetstream.MsgIDHeader: []string{"dlq-" + id},
	}
	if md, err := d.msg.Metadata(); err == nil {
		h.Set("Levee-Stream-Seq", strconv.FormatUint(md.Sequence.Stream, 10))
	}
	ctx, cancel := context.WithTimeout(w.writeCtx, 10*time.Second)
	defer cancel()
	_, err := w.js.PublishMsg(ctx, &nats.Msg{Subject: w.opts.DLQSubject + "." + kind, Data: data, Header: h})
	if err != nil {
		w.log.Error("dead-letter publish failed; message will be redelivered", zap.String("reason", kind), zap.Error(err))
		return false
	}
	w.m.dlq.WithLabelValues(kind).Inc()
	w.log.Warn("event dead-lettered", zap.String("reason", kind), zap.String("id", id), zap.String("detail", reason))
	return true
}
