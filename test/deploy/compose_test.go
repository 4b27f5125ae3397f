package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestComposeConfig has Debian's docker-compose (v1, Python) validate the
// file: schema, interpolation, anchors. No Docker daemon is needed.
func TestComposeConfig(t *testing.T) {
	dc := tool(t, "docker-compose", "/usr/bin/docker-compose")
	run(t, repoRoot(t), nil, time.Minute, dc, "-f", "deploy/compose/docker-compose.yml", "config", "-q")
}

// compose is the part of the compose file the tests read, after
// interpolation with an empty environment (every ${VAR:-default} takes its
// default).
type compose struct {
	dir      string              // deploy/compose: bind mount sources are relative to it
	Services map[string]*service `json:"services"`
	Volumes  map[string]any      `json:"volumes"`
}

type service struct {
	Image         string            `json:"image"`
	Build         *build            `json:"build"`
	Command       []string          `json:"command"`
	Environment   map[string]string `json:"environment"`
	Volumes       []string          `json:"volumes"`
	Ports         []string          `json:"ports"`
	ContainerName string            `json:"container_name"`
	Healthcheck   *struct {
		Test []string `json:"test"`
	} `json:"healthcheck"`
}

type build struct {
	Context    string            `json:"context"`
	Dockerfile string            `json:"dockerfile"`
	Args       map[string]string `json:"args"`
}

// mount is one entry of a service's volumes (short syntax).
type mount struct {
	source, target string
	bind           bool // a host path; otherwise a named volume
}

func loadCompose(t *testing.T) *compose {
	t.Helper()
	dir := composeDir(t)
	var raw map[string]any
	readYAML(t, filepath.Join(dir, "docker-compose.yml"), &raw)
	c := &compose{dir: dir}
	remarshal(t, interpolateAll(t, raw), c)
	require.NotEmpty(t, c.Services)
	return c
}

// interpolateAll applies compose variable substitution to every string.
func interpolateAll(t *testing.T, v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = interpolateAll(t, e)
		}
	case []any:
		for i, e := range x {
			x[i] = interpolateAll(t, e)
		}
	case string:
		s, err := interpolate(x)
		require.NoError(t, err)
		return s
	}
	return v
}

var varRE = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// interpolate substitutes $VAR, ${VAR}, ${VAR:-default} and ${VAR-default}
// as compose does with no variable set; $$ is a literal $.
func interpolate(s string) (string, error) {
	var err error
	out := varRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := varRE.FindStringSubmatch(m)
		switch {
		case m == "$$":
			return "$"
		case strings.HasSuffix(sub[2], "?"):
			err = fmt.Errorf("variable %s is required (%q)", sub[1], m)
		case sub[2] != "":
			return sub[3]
		}
		return ""
	})
	return out, err
}

// Services with a Levee image are those built from deploy/compose/Dockerfile;
// BINARY says which binary.
func (c *compose) levee(binary string) []string {
	var names []string
	for name, s := range c.Services {
		if s.Build != nil && s.Build.Args["BINARY"] == binary {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

func (c *compose) mounts(t *testing.T, name string) []mount {
	t.Helper()
	var ms []mount
	for _, v := range c.Services[name].Volumes {
		parts := strings.Split(v, ":")
		require.GreaterOrEqual(t, len(parts), 2, "service %s: volume %q: want SOURCE:TARGET[:MODE]", name, v)
		m := mount{source: parts[0], target: parts[1]}
		m.bind = strings.HasPrefix(m.source, ".") || strings.HasPrefix(m.source, "/")
		if m.bind && !filepath.IsAbs(m.source) {
			m.source = filepath.Join(c.dir, m.source)
		}
		ms = append(ms, m)
	}
	return ms
}

// hostPath maps a path inside the container of service name to the host
// file behind it through a bind mount; "" when no bind mount covers it.
func (c *compose) hostPath(t *testing.T, name, path string) string {
	t.Helper()
	for _, m := range c.mounts(t, name) {
		if !m.bind {
			continue
		}
		if rel, err := filepath.Rel(m.target, path); err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.Join(m.source, rel)
		}
	}
	return ""
}

// onVolume reports whether path inside service name is on a named volume.
func (c *compose) onVolume(t *testing.T, name, path string) (string, bool) {
	for _, m := range c.mounts(t, name) {
		if rel, err := filepath.Rel(m.target, path); !m.bind && err == nil && !strings.HasPrefix(rel, "..") {
			return m.source, true
		}
	}
	return "", false
}

// TestComposeFiles: every bind-mounted file exists, every named volume is
// declared (and every declared one used), the Levee images build from the
// repository root with the Dockerfile, and scalable services have no fixed
// name or host port.
func TestComposeFiles(t *testing.T) {
	c := loadCompose(t)
	used := map[string]bool{}
	for name := range c.Services {
		for _, m := range c.mounts(t, name) {
			if m.bind {
				_, err := os.Stat(m.source)
				require.NoError(t, err, "service %s mounts a missing path", name)
				continue
			}
			_, declared := c.Volumes[m.source]
			require.True(t, declared, "service %s uses volume %s, not declared under volumes:", name, m.source)
			used[m.source] = true
		}
	}
	for v := range c.Volumes {
		require.True(t, used[v], "volume %s is declared but no service uses it", v)
	}

	root := repoRoot(t)
	for _, binary := range []string{"ingest", "worker"} {
		names := c.levee(binary)
		require.NotEmpty(t, names, "no service builds the %s binary", binary)
		for _, name := range names {
			b := c.Services[name].Build
			ctx := filepath.Join(c.dir, b.Context)
			require.Equal(t, root, filepath.Clean(ctx), "service %s: the build context must be the repository root", name)
			require.FileExists(t, filepath.Join(ctx, b.Dockerfile), "service %s: dockerfile", name)
			require.DirExists(t, filepath.Join(root, "cmd", binary))
		}
	}
	require.GreaterOrEqual(t, len(c.levee("ingest")), 2, "two ingest replicas behind the proxy")
	require.Equal(t, []string{"worker"}, c.levee("worker"), "one worker service, scaled with --scale worker=N")
	for _, name := range append(c.levee("worker"), c.levee("ingest")...) {
		require.Empty(t, c.Services[name].Ports, "service %s publishes ports; only the proxy does", name)
	}
	w := c.Services["worker"]
	require.Empty(t, w.ContainerName, "a fixed container_name prevents --scale worker=N")
}

// TestDockerfile: multi-stage, Go 1.26 builder, static binary, non-root
// runtime with a tool for the health checks.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(composeDir(t), "Dockerfile"))
	require.NoError(t, err)
	df := string(b)
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	require.Len(t, froms, 2, "builder and runtime stages")
	require.True(t, strings.HasPrefix(froms[0][1], "golang:1.26"), "builder %s", froms[0][1])
	require.Contains(t, df, "CGO_ENABLED=0")
	require.Regexp(t, `(?m)^USER\s+[^0r]`, df, "the runtime stage runs as a non-root user")
	require.True(t, strings.HasPrefix(froms[1][1], "alpine:"), "the runtime image has busybox wget for health checks")
	require.False(t, slices.ContainsFunc(froms, func(m []string) bool { return strings.HasSuffix(m[1], ":latest") }))
}
