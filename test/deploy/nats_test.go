package deploy

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
)

// natsServices are the services running the nats image, sorted.
func (c *compose) natsServices() []string {
	var names []string
	for name, s := range c.Services {
		if strings.HasPrefix(s.Image, "nats:") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// natsConfigFile is the host path of the file a NATS service runs with.
func natsConfigFile(t *testing.T, c *compose, name string) string {
	t.Helper()
	args := c.Services[name].Command
	for i, a := range args {
		if (a == "--config" || a == "-c") && i+1 < len(args) {
			p := c.hostPath(t, name, args[i+1])
			require.NotEmpty(t, p, "service %s: %s is on no bind mount", name, args[i+1])
			return p
		}
	}
	t.Fatalf("service %s: no --config FILE in command", name)
	return ""
}

// natsOptions parses a node's config file with the nats-server release
// Levee embeds, as the server would at start.
func natsOptions(t *testing.T, c *compose, name string) *server.Options {
	t.Helper()
	opts, err := server.ProcessConfigFile(natsConfigFile(t, c, name))
	require.NoError(t, err, "service %s", name)
	return opts
}

func natsClientPort(t *testing.T, c *compose, name string) string {
	port := natsOptions(t, c, name).Port
	if port == 0 {
		port = server.DEFAULT_PORT
	}
	return strconv.Itoa(port)
}

// natsServerVersion is the nats-server/v2 version go.mod requires.
func natsServerVersion(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	require.NoError(t, err)
	m := regexp.MustCompile(`github\.com/nats-io/nats-server/v2 v(\S+)`).FindSubmatch(b)
	require.NotNil(t, m)
	return string(m[1])
}

// TestComposeNATS: three JetStream nodes of one cluster, each routing to all
// three, each with its own store volume and an explicit sync_interval, on
// the image of the release go.mod pins.
func TestComposeNATS(t *testing.T) {
	c := loadCompose(t)
	nodes := c.natsServices()
	require.Len(t, nodes, 3)
	version := natsServerVersion(t)
	clusters := map[string]bool{}
	stores := map[string]bool{}
	for _, name := range nodes {
		t.Run(name, func(t *testing.T) {
			s := c.Services[name]
			require.True(t, strings.HasPrefix(s.Image, "nats:"+version),
				"image %s: want nats:%s to match nats-server in go.mod", s.Image, version)

			opts := natsOptions(t, c, name)
			require.Equal(t, name, opts.ServerName, "server_name is the service name")
			require.True(t, opts.JetStream, "jetstream enabled")
			vol, ok := c.onVolume(t, name, opts.StoreDir)
			require.True(t, ok, "jetstream store_dir %s is on no named volume", opts.StoreDir)
			require.False(t, stores[vol], "nodes share the store volume %s", vol)
			stores[vol] = true

			b, err := os.ReadFile(natsConfigFile(t, c, name))
			require.NoError(t, err)
			require.Regexp(t, `(?m)^\s*sync_interval\s*:`, string(b), "sync_interval is set explicitly")
			require.True(t, opts.SyncAlways || opts.SyncInterval > 0)

			require.NotEmpty(t, opts.Cluster.Name)
			clusters[opts.Cluster.Name] = true
			var routes, want []string
			for _, r := range opts.Routes {
				routes = append(routes, r.Host)
			}
			for _, n := range nodes {
				want = append(want, net.JoinHostPort(n, strconv.Itoa(natsOptions(t, c, n).Cluster.Port)))
			}
			sort.Strings(routes)
			require.Equal(t, want, routes, "routes list every node")

			require.NotNil(t, s.Healthcheck)
			require.Contains(t, strings.Join(s.Healthcheck.Test, " "), fmt.Sprintf(":%d/healthz", opts.HTTPPort))
		})
	}
	require.Len(t, clusters, 1, "one cluster name")
}
