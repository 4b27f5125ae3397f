package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/levee-dev/levee/internal/config"
)

// Headers Levee sets on its messages.
const (
	HeaderFormat = "Levee-Format" // "pack/1" for packs, "json/1" for one event
	HeaderEvents = "Levee-Events" // number of events in the message
	HeaderReason = "Levee-Reason" // DLQ: why the event was dead-lettered

	FormatPack = "pack/1"
	FormatJSON = "json/1"
)

// PackSubject is the subject packs are published to; single events go to
// <prefix>.<type>. Event types never start with '_', so the two cannot clash.
func PackSubject(prefix string) string { return prefix + "._pack" }

// EventSubject is the subject of a single event of type typ.
func EventSubject(prefix, typ string) string { return prefix + "." + typ }

// EnsureStreams creates or updates the EVENTS stream and the DLQ stream. It
// is idempotent and safe to run from every replica at once.
//
// EVENTS is a work queue (a message is removed once acked) with DiscardNew:
// when it reaches max_bytes a publish fails, which the ingest side treats as
// backpressure; nothing already stored is ever discarded.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg config.NATS) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream.Name,
		Description: "Levee events awaiting a worker",
		Subjects:    []string{cfg.Stream.SubjectsPrefix + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    cfg.Stream.MaxBytes,
		Duplicates:  cfg.Stream.Duplicates,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Stream.Replicas,
	})
	if err != nil {
		return fmt.Errorf("queue: ensure stream %s: %w", cfg.Stream.Name, err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.DLQ.Name,
		Description: "Levee events that could not be written, with the reason in headers",
		Subjects:    []string{cfg.DLQ.Subject, cfg.DLQ.Subject + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    cfg.DLQ.MaxBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Stream.Replicas,
	})
	if err != nil {
		return fmt.Errorf("queue: ensure stream %s: %w", cfg.DLQ.Name, err)
	}
	return nil
}

// EnsureConsumer creates or updates the durable pull consumer shared by all
// workers. MaxDeliver is unlimited on the server: a message is never stranded
// because the sink was down for a while. The worker itself sends a message
// that keeps failing on its own merits to the DLQ after worker.max_deliver
// deliveries. BackOff spaces redeliveries after an ack timeout.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, cfg config.Config) (jetstream.Consumer, error) {
	w := cfg.Worker
	c, err := js.CreateOrUpdateConsumer(ctx, cfg.NATS.Stream.Name, jetstream.ConsumerConfig{
		Durable:       w.Consumer,
		Description:   "Levee workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.AckWait,
		BackOff:       []time.Duration{w.AckWait, 2 * w.AckWait, 4 * w.AckWait},
		MaxDeliver:    -1,
		MaxAckPending: w.MaxAckPending,
		Replicas:      0, // inherit the stream's
	})
	if err != nil {
		return nil, fmt.Errorf("queue: ensure consumer %s: %w", w.Consumer, err)
	}
	return c, nil
}
