package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/stretchr/testify/require"
)

// repoRoot is the module root: the directory above test/deploy.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "go.mod"))
	return root
}

// composeDir is deploy/compose.
func composeDir(t *testing.T) string {
	return filepath.Join(repoRoot(t), "deploy", "compose")
}

// tool finds a command on PATH or at one of the fallback paths, and fails
// the test (not skips it) when it is missing: scripts/test-deps.sh installs
// what these tests need.
func tool(t *testing.T, name string, fallbacks ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range fallbacks {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	t.Fatalf("%s not found on PATH or at %v; run scripts/test-deps.sh (make test-deps)", name, fallbacks)
	return ""
}

// goTool is the go command that runs these tests.
func goTool(t *testing.T) string {
	return tool(t, "go", filepath.Join(runtime.GOROOT(), "bin", "go"))
}

// run runs a command with a deadline and returns its combined output; it
// fails the test when the command fails.
func run(t *testing.T, dir string, stdin []byte, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, stdin, timeout, name, args...)
	require.NoError(t, err, "%s %v:\n%s", name, args, out)
	return out
}

func runErr(dir string, stdin []byte, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// readYAML parses a YAML file (anchors and merge keys resolved) into v by
// way of JSON, so that v can use json tags.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	m, err := yaml.Parser().Unmarshal(b)
	require.NoError(t, err, path)
	remarshal(t, m, v)
}

// remarshal converts v (maps and slices from a YAML parser) into out by way
// of JSON.
func remarshal(t *testing.T, v, out any) {
	t.Helper()
	j, err := json.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(j, out))
}
