package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// binDir holds ingest, worker and nats-server, built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "levee-cluster-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, args := range [][]string{
		{"build", "-o", dir + "/", "../../cmd/ingest", "../../cmd/worker"},
		// nats-server at the version go.mod pins.
		{"build", "-o", dir + "/nats-server", "github.com/nats-io/nats-server/v2"},
	} {
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go %v: %v\n%s", args, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
