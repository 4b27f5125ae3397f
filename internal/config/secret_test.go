package config_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/levee-dev/levee/internal/config"
)

// A reload that changes a restart-only key holding a secret names the key
// but logs neither the running value nor the new one.
func TestWatcherDoesNotLogRestartOnlySecrets(t *testing.T) {
	digest := func(c byte) string { return fmt.Sprintf("%064x", []byte{c})[:64] }
	tests := []struct {
		key         string
		before      string // YAML
		after       string
		secrets     []string
		restartOnly bool
	}{
		{key: "nats.url", before: "nats: {url: \"nats://u:natsold@127.0.0.1:4222\"}", after: "nats: {url: \"nats://u:natsnew@127.0.0.1:4222\"}",
			secrets: []string{"natsold", "natsnew"}, restartOnly: true},
		{key: "nats.url", before: "nats: {url: \"nats://tokold@127.0.0.1:4222\"}", after: "nats: {url: \"nats://toknew@127.0.0.1:4222\"}",
			secrets: []string{"tokold", "toknew"}, restartOnly: true},
		{key: "nats.password", before: "nats: {user: u, password: pwold}", after: "nats: {user: u, password: pwnew}",
			secrets: []string{"pwold", "pwnew"}, restartOnly: true},
		{key: "nats.token", before: "nats: {token: tkold}", after: "nats: {token: tknew}",
			secrets: []string{"tkold", "tknew"}, restartOnly: true},
		{key: "sink.postgres.dsn", before: "sink: {postgres: {dsn: \"host=h user=u password=dbold\"}}", after: "sink: {postgres: {dsn: \"host=h user=u password=dbnew\"}}",
			secrets: []string{"dbold", "dbnew"}, restartOnly: true},
		{key: "ingest.auth.api_keys", before: "ingest: {auth: {api_keys: [\"ci:" + digest('a') + "\"]}}", after: "ingest: {auth: {api_keys: [\"ci:" + digest('b') + "\"]}}",
			secrets: []string{digest('a'), digest('b')}},
	}
	for _, tc := range tests {
		t.Run(tc.key+" "+tc.secrets[0], func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			wd := watch(t, tc.before+"\n", zap.New(core))
			writeFile(t, wd.path, tc.after+"\nbatch: {max_rows: 5}\n")
			applied, err := wd.w.Check()
			require.NoError(t, err)
			require.True(t, applied)
			if tc.restartOnly {
				require.Len(t, logs.FilterField(zap.String("key", tc.key)).All(), 1, "the change is logged once, by key")
			}
			require.NotEmpty(t, logs.All())
			for _, e := range logs.All() {
				line := fmt.Sprintf("%s %v", e.Message, e.ContextMap())
				for _, s := range tc.secrets {
					require.NotContains(t, line, s, "a secret was logged")
				}
			}
		})
	}
}

// Admin listeners (metrics) and the embedded NATS server listen on loopback
// unless configured otherwise.
func TestDefaultListenersAreLoopback(t *testing.T) {
	cfg, err := config.Load(config.Source{Environ: noEnv})
	require.NoError(t, err)
	for key, addr := range map[string]string{
		"ingest.listen":        cfg.Ingest.Listen,
		"ingest.admin_listen":  cfg.Ingest.AdminListen,
		"worker.admin_listen":  cfg.Worker.AdminListen,
		"nats.embedded.listen": cfg.NATS.Embedded.Listen,
	} {
		host, _, err := net.SplitHostPort(addr)
		require.NoError(t, err, key)
		ip := net.ParseIP(host)
		require.True(t, ip != nil && ip.IsLoopback(), "%s defaults to %s, not a loopback address", key, addr)
	}
}

func TestSecurityKeys(t *testing.T) {
	cert, key := tempConfig(t, "c"), tempConfig(t, "k")
	tests := []struct {
		name  string
		flags map[string]string
		want  string // error naming the key; "" = valid
	}{
		{name: "defaults", flags: nil},
		{name: "rate limit", flags: map[string]string{"ingest.auth.rate_limit": "2.5", "ingest.auth.rate_burst": "10"}},
		{name: "negative rate limit", flags: map[string]string{"ingest.auth.rate_limit": "-1"}, want: "ingest.auth.rate_limit"},
		{name: "zero burst", flags: map[string]string{"ingest.auth.rate_burst": "0"}, want: "ingest.auth.rate_burst"},
		{name: "tls", flags: map[string]string{"ingest.tls.cert_file": cert, "ingest.tls.key_file": key}},
		{name: "tls cert without key", flags: map[string]string{"ingest.tls.cert_file": cert}, want: "ingest.tls.cert_file"},
		{name: "tls key without cert", flags: map[string]string{"ingest.tls.key_file": key}, want: "ingest.tls.cert_file"},
		{name: "key named none", flags: map[string]string{"ingest.auth.api_keys": "none:" + fmt.Sprintf("%064d", 0)}, want: "ingest.auth.api_keys[0].name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load(config.Source{Environ: noEnv, Flags: tc.flags})
			if tc.want != "" {
				require.ErrorContains(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.flags["ingest.tls.cert_file"] != "", cfg.Ingest.TLS.Enabled())
		})
	}
	require.True(t, config.IsLive("ingest.auth.rate_limit"))
	require.True(t, config.IsLive("ingest.auth.rate_burst"))
	require.False(t, config.IsLive("ingest.tls.cert_file"))
	require.False(t, config.IsLive("ingest.tls.key_file"))
}
