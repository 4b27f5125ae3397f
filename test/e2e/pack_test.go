package e2e

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// 100k events from concurrent single-event and bulk clients, packed; a
// worker killed with SIGKILL in the middle of writing packs and restarted
// loses nothing and duplicates nothing.
func TestWorkerKill9MidPack(t *testing.T) {
	sinkYAML, read := sqliteSink(t)
	c := newCluster(t, sinkYAML, read)
	c.startIngest()
	single := newPoster("http://"+c.public, "single", 1)
	bulk := newPoster("http://"+c.public, "bulk", 100)
	var wg sync.WaitGroup
	for _, p := range []*poster{single, bulk} {
		wg.Go(func() {
			var cw sync.WaitGroup
			for range 8 {
				cw.Go(func() {
					for {
						if p == single && p.next.Load() >= 10_000 || p == bulk && p.next.Load() >= 90_000 {
							return
						}
						p.postOnce()
					}
				})
			}
			cw.Wait()
		})
	}
	wg.Wait()
	a1, s1, _ := single.snapshot()
	a2, s2, _ := bulk.snapshot()
	require.Equal(t, map[int]int{202: s1[202]}, s1)
	require.Equal(t, map[int]int{202: s2[202]}, s2)
	require.Equal(t, 100_000, a1+a2)
	require.Greater(t, metricValue(t, c.admin, `levee_publish_messages_total{format="pack",result="ok"}`), 0.0)

	for range 3 {
		c.startWorker()
		time.Sleep(400 * time.Millisecond) // mid-stream: packs fetched, batches forming or writing
		kill9(t, c.worker)
	}
	c.startWorker()
	requireExactlyOnce(t, single, read, 2*time.Minute)
	requireExactlyOnce(t, bulk, read, time.Minute)
	c.worker.stop(t)
	c.ingest.stop(t)
}
