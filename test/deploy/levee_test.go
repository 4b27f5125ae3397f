package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levee-dev/levee/internal/config"
)

// leveeConfig loads the configuration a Levee service of the compose file
// runs with, exactly as the binary would: the file named by -config (through
// its bind mount), the service's LEVEE_* variables and any key flags.
// It fails on an unknown key or an invalid value, naming it.
func leveeConfig(t *testing.T, c *compose, name string) *config.Config {
	t.Helper()
	keys, err := config.Keys()
	require.NoError(t, err)
	known := map[string]bool{}
	for _, k := range keys {
		known[k] = true
	}

	s := c.Services[name]
	var env []string
	for k, v := range s.Environment {
		if strings.HasPrefix(k, config.EnvPrefix) {
			key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, config.EnvPrefix), "__", "."))
			require.True(t, known[key], "service %s: %s names no config key (%q)", name, k, key)
		}
		env = append(env, k+"="+v)
	}

	src := config.Source{Flags: map[string]string{}, Environ: func() []string { return env }}
	args := s.Command
	for i := 0; i < len(args); i++ {
		flag, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		require.True(t, strings.HasPrefix(args[i], "-"), "service %s: unexpected argument %q", name, args[i])
		if !hasValue {
			require.Less(t, i+1, len(args), "service %s: %s without a value", name, args[i])
			i++
			value = args[i]
		}
		if flag == "config" {
			src.File = c.hostPath(t, name, value)
			require.NotEmpty(t, src.File, "service %s: -config %s is on no bind mount", name, value)
			continue
		}
		require.True(t, known[flag], "service %s: flag -%s names no config key", name, flag)
		src.Flags[flag] = value
	}
	require.NotEmpty(t, src.File, "service %s: no -config FILE in command", name)
	cfg, err := config.Load(src)
	require.NoError(t, err, "service %s", name)
	return cfg
}

func splitAddr(t *testing.T, addr string) (host, port string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err, addr)
	return host, port
}

// TestComposeLeveeConfig: every Levee service's configuration loads, and it
// describes the compose topology: the three NATS nodes, R3 streams,
// PostgreSQL, listeners reachable from other containers, the spool on a
// volume, and health checks on /readyz of the admin listener.
func TestComposeLeveeConfig(t *testing.T) {
	c := loadCompose(t)
	natsNodes := c.natsServices()
	require.Len(t, natsNodes, 3)
	spoolVolumes := map[string]string{}

	for _, binary := range []string{"ingest", "worker"} {
		for _, name := range c.levee(binary) {
			t.Run(name, func(t *testing.T) {
				cfg := leveeConfig(t, c, name)

				var hosts []string
				for _, u := range strings.Split(cfg.NATS.URL, ",") {
					pu, err := url.Parse(strings.TrimSpace(u))
					require.NoError(t, err)
					require.Equal(t, "nats", pu.Scheme)
					hosts = append(hosts, pu.Host)
				}
				sort.Strings(hosts)
				var want []string
				for _, n := range natsNodes {
					want = append(want, net.JoinHostPort(n, natsClientPort(t, c, n)))
				}
				require.Equal(t, want, hosts, "nats.url lists every node of the cluster")
				require.Equal(t, len(natsNodes), cfg.NATS.Stream.Replicas, "nats.stream.replicas")

				require.Equal(t, "postgres", cfg.Sink.Kind)
				checkDSN(t, c, cfg.Sink.Postgres.DSN)

				admin := cfg.Worker.AdminListen
				if binary == "ingest" {
					admin = cfg.Ingest.AdminListen
					host, _ := splitAddr(t, cfg.Ingest.Listen)
					require.Equal(t, "0.0.0.0", host, "ingest.listen must be reachable by the proxy")
					require.NotEmpty(t, cfg.Ingest.Auth.APIKeys, "ingest.auth.api_keys")
					vol, ok := c.onVolume(t, name, cfg.Degrade.Spool.Dir)
					require.True(t, ok, "degrade.spool.dir %s is on no named volume", cfg.Degrade.Spool.Dir)
					require.NotContains(t, spoolVolumes, vol, "ingest replicas share spool volume %s", vol)
					spoolVolumes[vol] = name
				}
				host, port := splitAddr(t, admin)
				require.Equal(t, "0.0.0.0", host, "the admin listener must be reachable by Prometheus")

				hc := c.Services[name].Healthcheck
				require.NotNil(t, hc, "service %s has no health check", name)
				test := strings.Join(hc.Test, " ")
				require.Contains(t, test, "/readyz")
				require.Contains(t, test, ":"+port+"/", "the health check asks the admin listener")
			})
		}
	}
}

// checkDSN: the DSN reaches the postgres service with the user, password
// and database it is created with.
func checkDSN(t *testing.T, c *compose, dsn string) {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	pg := c.Services["postgres"]
	require.NotNil(t, pg, "no postgres service")
	require.Equal(t, "postgres", u.Hostname())
	require.Equal(t, pg.Environment["POSTGRES_USER"], u.User.Username())
	pw, _ := u.User.Password()
	require.Equal(t, pg.Environment["POSTGRES_PASSWORD"], pw)
	require.Equal(t, pg.Environment["POSTGRES_DB"], strings.TrimPrefix(u.Path, "/"))
}

// TestExampleAPIKey: the example digest in levee/levee.yaml is what the
// command in its comment prints.
func TestExampleAPIKey(t *testing.T) {
	c := loadCompose(t)
	name := c.levee("ingest")[0]
	cfg := leveeConfig(t, c, name)
	b, err := os.ReadFile(c.hostPath(t, name, "/etc/levee/levee.yaml"))
	require.NoError(t, err)
	m := regexp.MustCompile(`printf %s '([^']+)' \| sha256sum`).FindStringSubmatch(string(b))
	require.NotNil(t, m, "levee.yaml says how the example digest was made")
	sum := sha256.Sum256([]byte(m[1]))
	var digests []string
	for _, k := range cfg.Ingest.Auth.APIKeys {
		digests = append(digests, k.SHA256)
	}
	require.Contains(t, digests, hex.EncodeToString(sum[:]))
}
