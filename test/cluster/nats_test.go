package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// natsNode is one nats-server of the cluster: its ports, store and config
// file stay the same across restarts.
type natsNode struct {
	name                   string // server_name
	client, route, monitor string // loopback addresses
	conf, store            string
	p                      *proc
}

// natsCluster is three nats-server processes routed to each other.
type natsCluster struct {
	t     *testing.T
	nodes []*natsNode
}

// natsConf is the config file of one node. It is the same shape
// scripts/cluster.sh writes.
const natsConf = `# nats-server config of node %[1]s (written by test/cluster)
server_name: %[1]s
listen: %[2]s
http: %[3]s
jetstream {
  store_dir: %[4]q
  # JetStream fsyncs its files every sync_interval. With R3 a PubAck means
  # a quorum (2 of 3 nodes) has the message, written but not necessarily
  # fsynced: a process crash loses nothing (the page cache survives), a
  # simultaneous power loss of two nodes could lose the last interval.
  # "always" fsyncs before every PubAck.
  sync_interval: %[5]s
}
cluster {
  name: levee
  listen: %[6]s
  routes: [%[7]s]
}
`

// startNATSCluster writes a config per node and starts all three, then waits
// until each reports a healthy JetStream.
func startNATSCluster(t *testing.T, dir, syncInterval string) *natsCluster {
	t.Helper()
	ports := freePorts(t, 9)
	c := &natsCluster{t: t}
	var routes []string
	for i := range 3 {
		routes = append(routes, "nats-route://"+ports[3+i])
	}
	for i := range 3 {
		n := &natsNode{
			name: fmt.Sprintf("n%d", i+1), client: ports[i], route: ports[3+i], monitor: ports[6+i],
			conf: filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1)), store: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
		}
		conf := fmt.Sprintf(natsConf, n.name, n.client, n.monitor, n.store, syncInterval, n.route, strings.Join(routes, ", "))
		require.NoError(t, os.WriteFile(n.conf, []byte(conf), 0o644))
		n.p = newProc(t, dir, "nats-"+n.name, "nats-server", "-c", n.conf)
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		n.p.start()
	}
	for _, n := range c.nodes {
		c.waitHealthy(n, 60*time.Second)
	}
	return c
}

// urls is the nats.url of the ingest and worker processes: every node.
func (c *natsCluster) urls() string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, "nats://"+n.client)
	}
	return strings.Join(u, ",")
}

// waitHealthy waits for the node's /healthz, which answers 200 once its
// JetStream is enabled and current with the cluster.
func (c *natsCluster) waitHealthy(n *natsNode, d time.Duration) time.Duration {
	return waitReady(c.t, n.monitor, "/healthz", d)
}

func (c *natsCluster) node(name string) *natsNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// connect returns a JetStream client connected to any node; it reconnects
// to another one when its node dies.
func (c *natsCluster) connect() jetstream.JetStream {
	c.t.Helper()
	nc, err := nats.Connect(c.urls(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(2*time.Second))
	require.NoError(c.t, err)
	c.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(c.t, err)
	return js
}

// streamLeader returns the server_name of the stream's RAFT leader, ""
// while there is none.
func streamLeader(ctx context.Context, js jetstream.JetStream, stream string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", err
	}
	info := s.CachedInfo()
	if info.Cluster == nil {
		return "", fmt.Errorf("stream %s has no cluster info", stream)
	}
	return info.Cluster.Leader, nil
}

// waitLeader waits up to d for a stream leader other than not, and returns
// it and how long it took.
func waitLeader(t *testing.T, js jetstream.JetStream, stream, not string, d time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	var leader string
	require.Eventually(t, func() bool {
		l, err := streamLeader(context.Background(), js, stream)
		leader = l
		return err == nil && l != "" && l != not
	}, d, 50*time.Millisecond, "stream %s has no leader other than %q after %v", stream, not, d)
	return leader, time.Since(start)
}

// serverCounts is the server's view at the end: messages the stream stored
// (its last sequence: EVENTS is a work queue, acked messages are removed but
// sequences are never reused), messages left, and deliveries the consumer
// made (redeliveries included).
type serverCounts struct {
	stored, left, delivered, ackPending, redelivered uint64
}

func readServerCounts(t *testing.T, js jetstream.JetStream, stream, consumer string) serverCounts {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	ci, err := js.Consumer(ctx, stream, consumer)
	require.NoError(t, err)
	info := ci.CachedInfo()
	st := s.CachedInfo().State
	return serverCounts{stored: st.LastSeq, left: st.Msgs, delivered: info.Delivered.Consumer,
		ackPending: uint64(info.NumAckPending), redelivered: uint64(info.NumRedelivered)}
}
