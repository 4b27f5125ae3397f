package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"
)

// secureNATS is a nats-server process that requires some form of
// authentication or TLS, started from a config file.
type secureNATS struct {
	addr string
	p    *proc
}

// startSecureNATS runs nats-server with JetStream and the given extra
// configuration (authorization, tls, operator…).
func startSecureNATS(t *testing.T, extra string) *secureNATS {
	t.Helper()
	n := &secureNATS{addr: freePort(t)}
	host, port := splitAddr(t, n.addr)
	conf := filepath.Join(t.TempDir(), "nats.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf("host: %q\nport: %s\njetstream {\n  store_dir: %q\n}\n%s\n",
		host, port, t.TempDir(), extra)), 0o600))
	n.p = start(t, "nats-server", "-c", conf)
	requireListening(t, n.addr, n.p)
	return n
}

func requireListening(t *testing.T, addr string, p *proc) {
	t.Helper()
	require.Eventually(t, func() bool {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("nats-server exited: %v\n%s", err, p.out.String())
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
}

// natsConfig writes a config for ingest and worker against natsURL with a
// SQLite sink; credentials are given as flags.
func natsConfig(t *testing.T, natsURL string) (config, public, admin, wadmin string) {
	dir := t.TempDir()
	public, admin, wadmin = freePort(t), freePort(t), freePort(t)
	config = filepath.Join(dir, "levee.yaml")
	writeConfig(t, config, fmt.Sprintf(`
ingest:
  listen: %q
  admin_listen: %q
nats:
  url: %q
  connect_timeout: 2s
worker:
  admin_listen: %q
degrade:
  spool:
    dir: %q
sink:
  sqlite:
    path: %q
`, public, admin, natsURL, wadmin, filepath.Join(dir, "spool"), filepath.Join(dir, "levee.db")))
	return config, public, admin, wadmin
}

// requireExitsWith runs a binary that must fail: it exits non-zero within
// a few seconds (a bad credential is not retried) and its output names the
// problem. It returns the output.
func requireExitsWith(t *testing.T, bin string, args []string, want ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, bin), args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	begin := time.Now()
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		elapsed := time.Since(begin)
		require.Error(t, err, "%s exited 0:\n%s", bin, out.String())
		require.Less(t, elapsed, 5*time.Second, "%s took %s to give up", bin, elapsed)
		lower := strings.ToLower(out.String())
		for _, w := range want {
			require.Contains(t, lower, strings.ToLower(w), "%s output:\n%s", bin, out.String())
		}
		t.Logf("%s exited after %s: %s", bin, elapsed.Round(time.Millisecond), lastLine(out.String()))
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s still running 15s after start with a bad credential (a hang, not an error):\n%s", bin, out.String())
	}
	return out.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// operatorSetup builds an operator, a system account and an account with
// JetStream, in memory-resolver form, and returns the server config and a
// creds file for a user of the account. A creds file of a user of an
// account the server does not know is the wrong credential.
func operatorSetup(t *testing.T) (conf, goodCreds, badCreds string) {
	t.Helper()
	dir := t.TempDir()
	op, err := nkeys.CreateOperator()
	require.NoError(t, err)
	opPub, err := op.PublicKey()
	require.NoError(t, err)
	_, sysPub := newAccountKey(t)
	acc, accPub := newAccountKey(t)
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "levee-test"
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(op)
	require.NoError(t, err)
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	sysJWT, err := sc.Encode(op)
	require.NoError(t, err)
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = "LEVEE"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := ac.Encode(op)
	require.NoError(t, err)
	opFile := filepath.Join(dir, "operator.jwt")
	require.NoError(t, os.WriteFile(opFile, []byte(opJWT), 0o600))
	conf = fmt.Sprintf("operator: %q\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %q\n  %s: %q\n}\n",
		opFile, sysPub, sysPub, sysJWT, accPub, accJWT)

	other, _ := newAccountKey(t) // not in the resolver
	goodCreds = userCreds(t, dir, "good", acc)
	badCreds = userCreds(t, dir, "bad", other)
	return conf, goodCreds, badCreds
}

func newAccountKey(t *testing.T) (nkeys.KeyPair, string) {
	kp, err := nkeys.CreateAccount()
	require.NoError(t, err)
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	return kp, pub
}

func userCreds(t *testing.T, dir, name string, account nkeys.KeyPair) string {
	user, err := nkeys.CreateUser()
	require.NoError(t, err)
	userPub, err := user.PublicKey()
	require.NoError(t, err)
	uc := jwt.NewUserClaims(userPub)
	uc.Name = name
	userJWT, err := uc.Encode(account)
	require.NoError(t, err)
	seed, err := user.Seed()
	require.NoError(t, err)
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	require.NoError(t, err)
	path := filepath.Join(dir, name+".creds")
	require.NoError(t, os.WriteFile(path, creds, 0o600))
	return path
}

// nkeySeed writes the seed of a new user nkey and returns its path and the
// public key.
func nkeySeed(t *testing.T, name string) (path, pub string) {
	user, err := nkeys.CreateUser()
	require.NoError(t, err)
	pub, err = user.PublicKey()
	require.NoError(t, err)
	seed, err := user.Seed()
	require.NoError(t, err)
	path = filepath.Join(t.TempDir(), name+".nk")
	require.NoError(t, os.WriteFile(path, seed, 0o600))
	return path, pub
}

// Each way NATS can require a client to prove itself: with the right
// credential, ingest and worker start, become ready and move an event; with
// a wrong one, each exits non-zero within seconds, saying why.
func TestNATSSecurity(t *testing.T) {
	ca := newCA(t, "nats-test")
	serverCert, serverKey := ca.issue(t, "nats-server")
	clientCert, clientKey := ca.issue(t, "levee-client")
	otherCA := newCA(t, "impostor")
	strangerCert, strangerKey := otherCA.issue(t, "stranger")
	seedFile, seedPub := nkeySeed(t, "good")
	wrongSeed, _ := nkeySeed(t, "wrong")
	opConf, goodCreds, badCreds := operatorSetup(t)
	type attempt struct {
		name  string
		flags []string
		want  []string // in the output of a refused binary
	}
	tests := []struct {
		name   string
		server string
		good   []string
		bad    []attempt
	}{
		{
			name:   "user and password",
			server: "authorization {\n  user: levee\n  password: \"right-pw\"\n}",
			good:   []string{"-nats.user", "levee", "-nats.password", "right-pw"},
			bad: []attempt{
				{name: "wrong password", flags: []string{"-nats.user", "levee", "-nats.password", "wrong-pw"}, want: []string{"authorization violation"}},
				{name: "no credentials", want: []string{"authorization violation"}},
			},
		},
		{
			name:   "token",
			server: "authorization {\n  token: \"right-token\"\n}",
			good:   []string{"-nats.token", "right-token"},
			bad: []attempt{
				{name: "wrong token", flags: []string{"-nats.token", "wrong-token"}, want: []string{"authorization violation"}},
			},
		},
		{
			name:   "nkey",
			server: fmt.Sprintf("authorization {\n  users: [ { nkey: %s } ]\n}", seedPub),
			good:   []string{"-nats.nkey_seed_file", seedFile},
			bad: []attempt{
				{name: "another nkey", flags: []string{"-nats.nkey_seed_file", wrongSeed}, want: []string{"authorization violation"}},
				{name: "missing seed file", flags: []string{"-nats.nkey_seed_file", seedFile + ".absent"}, want: []string{"nats.nkey_seed_file", "no such file"}},
			},
		},
		{
			name:   "tls with a custom CA",
			server: fmt.Sprintf("tls {\n  cert_file: %q\n  key_file: %q\n}", serverCert, serverKey),
			good:   []string{"-nats.tls.ca_file", ca.CertPEM},
			bad: []attempt{
				{name: "another CA", flags: []string{"-nats.tls.ca_file", otherCA.CertPEM}, want: []string{"tls", "certificate signed by unknown authority"}},
				{name: "system roots only", want: []string{"tls", "certificate signed by unknown authority"}},
			},
		},
		{
			name: "mutual tls",
			server: fmt.Sprintf("tls {\n  cert_file: %q\n  key_file: %q\n  ca_file: %q\n  verify: true\n}",
				serverCert, serverKey, ca.CertPEM),
			good: []string{"-nats.tls.ca_file", ca.CertPEM, "-nats.tls.cert_file", clientCert, "-nats.tls.key_file", clientKey},
			bad: []attempt{
				{name: "no client certificate", flags: []string{"-nats.tls.ca_file", ca.CertPEM}, want: []string{"tls", "certificate required"}},
				// The client offers no certificate the server's CA list accepts.
				{name: "client certificate of another CA", flags: []string{"-nats.tls.ca_file", ca.CertPEM,
					"-nats.tls.cert_file", strangerCert, "-nats.tls.key_file", strangerKey}, want: []string{"tls", "certificate required"}},
			},
		},
		{
			name:   "creds file (operator JWT)",
			server: opConf,
			good:   []string{"-nats.creds_file", goodCreds},
			bad: []attempt{
				{name: "user of an unknown account", flags: []string{"-nats.creds_file", badCreds}, want: []string{"authorization violation"}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := startSecureNATS(t, tc.server)
			config, public, admin, wadmin := natsConfig(t, "nats://"+n.addr)
			t.Run("right credential", func(t *testing.T) {
				ingest := start(t, "ingest", append([]string{"-config", config}, tc.good...)...)
				waitReady(t, public)
				waitReady(t, admin)
				postEvents(t, public, 0, 3)
				require.Equal(t, 3.0, metricValue(t, admin, `levee_ingest_events_total{outcome="accepted",path="queue"}`))
				worker := start(t, "worker", append([]string{"-config", config}, tc.good...)...)
				waitReady(t, wadmin)
				require.Eventually(t, func() bool {
					return metricValue(t, wadmin, `levee_sink_rows_total{result="inserted"}`) == 3
				}, 20*time.Second, 50*time.Millisecond, "the worker wrote the events")
				worker.stop(t)
				ingest.stop(t)
			})
			for _, a := range tc.bad {
				t.Run(a.name, func(t *testing.T) {
					for _, bin := range []string{"ingest", "worker"} {
						requireExitsWith(t, bin, append([]string{"-config", config}, a.flags...), a.want...)
					}
				})
			}
		})
	}
}
