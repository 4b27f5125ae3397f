package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// The JetStream ceiling publishes like natscli's "bench js pub async":
// ceilingPublishers connections, ceilingWindow async publishes in flight
// each, ceilingMsgBytes per message, into a file-storage stream.
const (
	ceilingStream     = "LOADGEN_CEILING"
	ceilingSubject    = "loadgen.ceiling"
	ceilingPublishers = 4
	ceilingWindow     = 1000
	ceilingMsgBytes   = 256
	copyTable         = "loadgen_copy_ceiling"
	copyBatch         = 1000
)

// JSCeiling is the measured JetStream async-publish rate.
type JSCeiling struct {
	Tool       string  `json:"tool"` // "natscli" or "built-in"
	Command    string  `json:"command,omitempty"`
	Msgs       int     `json:"msgs"`
	MsgBytes   int     `json:"msg_bytes"`
	Publishers int     `json:"publishers"`
	MsgsPerSec float64 `json:"msgs_per_s"`
}

// JetStreamCeiling measures async publishing of msgs messages to a scratch
// file-storage stream on the NATS server at url, with natscli at natsBin
// when it is not empty and with the built-in equivalent otherwise. The
// scratch stream is deleted afterwards.
func JetStreamCeiling(ctx context.Context, url, natsBin string, msgs int, log *zap.Logger) (*JSCeiling, error) {
	defer deleteStream(url, ceilingStream)
	if natsBin != "" {
		c, err := natscliCeiling(ctx, url, natsBin, msgs)
		if err == nil {
			return c, nil
		}
		log.Warn("natscli bench failed; using the built-in publisher", zap.Error(err))
	}
	return builtinCeiling(ctx, url, msgs)
}

var natsRate = regexp.MustCompile(`aggregated stats: ([\d,.]+) msgs/sec`)

func natscliCeiling(ctx context.Context, url, bin string, msgs int) (*JSCeiling, error) {
	args := []string{"bench", "js", "pub", "async", ceilingSubject, "--server", url,
		"--clients", strconv.Itoa(ceilingPublishers), "--msgs", strconv.Itoa(msgs),
		"--size", strconv.Itoa(ceilingMsgBytes), "--batch", strconv.Itoa(ceilingWindow),
		"--create", "--storage", "file", "--stream", ceilingStream, "--purge", "--no-progress"}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("loadgen: nats bench: %w: %s", err, lastLine(out))
	}
	m := natsRate.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("loadgen: nats bench: no aggregated rate in output: %s", lastLine(out))
	}
	rate, err := strconv.ParseFloat(strings.ReplaceAll(string(m[1]), ",", ""), 64)
	if err != nil {
		return nil, fmt.Errorf("loadgen: nats bench rate %q: %w", m[1], err)
	}
	return &JSCeiling{Tool: "natscli", Command: "nats " + strings.Join(args, " "), Msgs: msgs,
		MsgBytes: ceilingMsgBytes, Publishers: ceilingPublishers, MsgsPerSec: rate}, nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// builtinCeiling publishes msgs messages from ceilingPublishers connections,
// each with up to ceilingWindow async publishes awaiting their PubAck.
func builtinCeiling(ctx context.Context, url string, msgs int) (*JSCeiling, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, fmt.Errorf("loadgen: connect nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("loadgen: jetstream: %w", err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: ceilingStream,
		Subjects: []string{ceilingSubject}, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, fmt.Errorf("loadgen: create stream %s: %w", ceilingStream, err)
	}
	payload := bytes.Repeat([]byte("x"), ceilingMsgBytes)
	per := msgs / ceilingPublishers
	var wg sync.WaitGroup
	var failed atomic.Int64
	errs := make([]error, ceilingPublishers)
	start := time.Now()
	for i := range ceilingPublishers {
		wg.Go(func() { errs[i] = publishMany(ctx, url, payload, per, &failed) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ok := per*ceilingPublishers - int(failed.Load())
	return &JSCeiling{Tool: "built-in", Msgs: ok, MsgBytes: ceilingMsgBytes, Publishers: ceilingPublishers,
		MsgsPerSec: float64(ok) / elapsed.Seconds()}, nil
}

func publishMany(ctx context.Context, url string, payload []byte, n int, failed *atomic.Int64) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return fmt.Errorf("loadgen: connect nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(ceilingWindow))
	if err != nil {
		return fmt.Errorf("loadgen: jetstream: %w", err)
	}
	futs := make([]jetstream.PubAckFuture, 0, n)
	for range n {
		f, err := js.PublishAsync(ceilingSubject, payload)
		if err != nil {
			return fmt.Errorf("loadgen: publish: %w", err)
		}
		futs = append(futs, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		default:
			failed.Add(1)
		}
	}
	return nil
}

func deleteStream(url, name string) {
	nc, err := nats.Connect(url)
	if err != nil {
		return
	}
	defer nc.Close()
	if js, err := jetstream.New(nc); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, name)
	}
}

// CopyCeiling is the measured rate of raw pgx CopyFrom into a table shaped
// like the events table.
type CopyCeiling struct {
	Conns      int     `json:"conns"`
	BatchRows  int     `json:"batch_rows"`
	Rows       int64   `json:"rows"`
	RowsPerSec float64 `json:"rows_per_s"`
}

// PostgresCopyCeiling copies batches of copyBatch rows with conns
// connections for d into a scratch table, which it drops afterwards.
func PostgresCopyCeiling(ctx context.Context, dsn string, conns int, d time.Duration, size int) (*CopyCeiling, error) {
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("loadgen: connect postgres: %w", err)
	}
	defer admin.Close(context.Background())
	_, err = admin.Exec(ctx, `DROP TABLE IF EXISTS `+copyTable+`; CREATE TABLE `+copyTable+` (
		id text PRIMARY KEY, type text NOT NULL, ts timestamptz NOT NULL,
		received_at timestamptz NOT NULL, data json NOT NULL)`)
	if err != nil {
		return nil, fmt.Errorf("loadgen: create %s: %w", copyTable, err)
	}
	defer admin.Exec(context.Background(), `DROP TABLE IF EXISTS `+copyTable) //nolint:errcheck
	data := []byte(`{"pad":"` + strings.Repeat("x", max(size-60, 0)) + `"}`)
	var next, rows atomic.Int64
	errs := make([]error, conns)
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() { errs[i] = copyUntil(ctx, dsn, deadline, data, &next, &rows) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &CopyCeiling{Conns: conns, BatchRows: copyBatch, Rows: rows.Load(),
		RowsPerSec: float64(rows.Load()) / elapsed.Seconds()}, nil
}

func copyUntil(ctx context.Context, dsn string, deadline time.Time, data []byte, next, rows *atomic.Int64) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("loadgen: connect postgres: %w", err)
	}
	defer conn.Close(context.Background())
	cols := []string{"id", "type", "ts", "received_at", "data"}
	for time.Now().Before(deadline) {
		first := next.Add(copyBatch) - copyBatch
		now := time.Now()
		n, err := conn.CopyFrom(ctx, pgx.Identifier{copyTable}, cols, pgx.CopyFromSlice(copyBatch, func(i int) ([]any, error) {
			return []any{ID("copy", first+int64(i)), eventType, now, now, data}, nil
		}))
		if err != nil {
			return fmt.Errorf("loadgen: copy: %w", err)
		}
		rows.Add(n)
	}
	return nil
}
