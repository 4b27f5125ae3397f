package deploy

import (
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type promConfig struct {
	RuleFiles     []string `json:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `json:"job_name"`
		StaticConfigs []struct {
			Targets []string `json:"targets"`
		} `json:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `json:"names"`
			Type  string   `json:"type"`
			Port  int      `json:"port"`
		} `json:"dns_sd_configs"`
	} `json:"scrape_configs"`
}

// prometheusConfig reads the file the prometheus service runs with.
func prometheusConfig(t *testing.T, c *compose) (promConfig, string) {
	t.Helper()
	s := c.Services["prometheus"]
	require.NotNil(t, s, "no prometheus service")
	var file string
	for _, a := range s.Command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			file = c.hostPath(t, "prometheus", v)
		}
	}
	require.NotEmpty(t, file, "prometheus: --config.file on a bind mount")
	var pc promConfig
	readYAML(t, file, &pc)
	return pc, file
}

// TestPrometheusTargets: Prometheus loads the alert rules and scrapes the
// admin listener of every Levee replica under the job names the rules use.
func TestPrometheusTargets(t *testing.T) {
	c := loadCompose(t)
	pc, file := prometheusConfig(t, c)
	require.Contains(t, pc.RuleFiles, "alerts.yml")
	for _, r := range pc.RuleFiles {
		require.FileExists(t, filepath.Join(filepath.Dir(file), r))
	}

	want := map[string][]string{} // job → host:port it must scrape
	for _, name := range c.levee("ingest") {
		_, port := splitAddr(t, leveeConfig(t, c, name).Ingest.AdminListen)
		want["levee-ingest"] = append(want["levee-ingest"], net.JoinHostPort(name, port))
	}
	for _, name := range c.levee("worker") {
		_, port := splitAddr(t, leveeConfig(t, c, name).Worker.AdminListen)
		want["levee-worker"] = append(want["levee-worker"], net.JoinHostPort(name, port))
	}

	jobs := map[string]bool{}
	for _, sc := range pc.ScrapeConfigs {
		jobs[sc.JobName] = true
		var got []string
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, _ := splitAddr(t, target)
				require.True(t, host == "localhost" || c.Services[host] != nil,
					"job %s: target %s is no compose service", sc.JobName, target)
				got = append(got, target)
			}
		}
		for _, d := range sc.DNSSDConfigs {
			require.Contains(t, []string{"", "A"}, d.Type, "job %s: compose DNS answers A records", sc.JobName)
			for _, n := range d.Names {
				require.NotNil(t, c.Services[n], "job %s: dns_sd name %s is no compose service", sc.JobName, n)
				got = append(got, net.JoinHostPort(n, strconv.Itoa(d.Port)))
			}
		}
		if w, ok := want[sc.JobName]; ok {
			sort.Strings(got)
			sort.Strings(w)
			require.Equal(t, w, got, "job %s scrapes every replica on its admin port", sc.JobName)
		}
	}
	for job := range want {
		require.True(t, jobs[job], "no scrape job %s", job)
	}

	// Every job an alert selects on is scraped.
	jobRE := regexp.MustCompile(`\bjob\s*=~?\s*"([^"]+)"`)
	for _, r := range alertRules(t) {
		for _, m := range jobRE.FindAllStringSubmatch(r.Expr, -1) {
			for _, j := range strings.Split(m[1], "|") {
				require.True(t, jobs[j], "alert %s selects job %q, which prometheus.yml does not scrape", r.Alert, j)
			}
		}
	}
}

// TestHAProxy: the proxy publishes :8080, balances over every ingest
// replica's public listener and checks their /readyz.
func TestHAProxy(t *testing.T) {
	c := loadCompose(t)
	s := c.Services["haproxy"]
	require.NotNil(t, s, "no haproxy service")
	file := c.hostPath(t, "haproxy", "/usr/local/etc/haproxy/haproxy.cfg")
	require.FileExists(t, file, "the image reads /usr/local/etc/haproxy/haproxy.cfg")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	cfg := string(b)

	binds := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*bind\s+\S*:(\d+)`).FindAllStringSubmatch(cfg, -1) {
		binds[m[1]] = true
	}
	require.Equal(t, []string{"8080:8080"}, s.Ports, "the proxy alone publishes :8080")
	require.True(t, binds["8080"], "haproxy binds :8080")

	var servers, want []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server\s+\S+\s+(\S+)`).FindAllStringSubmatch(cfg, -1) {
		servers = append(servers, m[1])
	}
	for _, name := range c.levee("ingest") {
		_, port := splitAddr(t, leveeConfig(t, c, name).Ingest.Listen)
		want = append(want, net.JoinHostPort(name, port))
	}
	sort.Strings(servers)
	require.Equal(t, want, servers, "the backend lists every ingest replica's ingest.listen")
	require.Regexp(t, `uri /readyz`, cfg, "health check on /readyz")

	pc, _ := prometheusConfig(t, c)
	for _, sc := range pc.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				if host, port := splitAddr(t, target); host == "haproxy" {
					require.True(t, binds[port], "Prometheus scrapes %s; haproxy binds no :%s", target, port)
				}
			}
		}
	}
}

type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr       string `json:"expr"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // collapsed rows
}

// dashboardExprs returns every PromQL expression of the dashboard, by panel
// title, after checking the dashboard's structure against the provisioned
// data source.
func dashboardExprs(t *testing.T) map[string][]string {
	t.Helper()
	dir := filepath.Join(composeDir(t), "grafana")
	var ds struct {
		Datasources []struct {
			UID  string `json:"uid"`
			Type string `json:"type"`
			URL  string `json:"url"`
		} `json:"datasources"`
	}
	readYAML(t, filepath.Join(dir, "provisioning", "datasources", "prometheus.yml"), &ds)
	require.Len(t, ds.Datasources, 1)
	uid := ds.Datasources[0].UID
	require.Equal(t, "prometheus", ds.Datasources[0].Type)

	b, err := os.ReadFile(filepath.Join(dir, "dashboards", "levee.json"))
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(b, &d), "levee.json is valid JSON")
	require.NotEmpty(t, d.UID)
	require.NotEmpty(t, d.Title)

	exprs := map[string][]string{}
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			require.False(t, ids[p.ID], "panel id %d used twice", p.ID)
			ids[p.ID] = true
			require.LessOrEqual(t, p.GridPos.X+p.GridPos.W, 24, "panel %q is wider than the grid", p.Title)
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			require.NotNil(t, p.Datasource, "panel %q has no data source", p.Title)
			require.Equal(t, uid, p.Datasource.UID, "panel %q: data source", p.Title)
			for _, tg := range p.Targets {
				require.NotEmpty(t, tg.Expr, "panel %q: a target without expr", p.Title)
				if tg.Datasource != nil {
					require.Equal(t, uid, tg.Datasource.UID, "panel %q: target data source", p.Title)
				}
				exprs[p.Title] = append(exprs[p.Title], tg.Expr)
			}
		}
	}
	walk(d.Panels)
	require.NotEmpty(t, exprs)
	return exprs
}

// TestGrafana: Grafana is provisioned with the compose Prometheus and the
// dashboard directory it mounts; the dashboard is well formed.
func TestGrafana(t *testing.T) {
	c := loadCompose(t)
	require.NotNil(t, c.Services["grafana"], "no grafana service")
	dir := filepath.Join(composeDir(t), "grafana")

	var ds struct {
		Datasources []struct {
			URL string `json:"url"`
		} `json:"datasources"`
	}
	readYAML(t, filepath.Join(dir, "provisioning", "datasources", "prometheus.yml"), &ds)
	u, err := url.Parse(ds.Datasources[0].URL)
	require.NoError(t, err)
	require.Equal(t, "prometheus", u.Hostname(), "the data source is the compose prometheus service")
	require.Equal(t, "9090", u.Port())

	var prov struct {
		Providers []struct {
			Options struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	readYAML(t, filepath.Join(dir, "provisioning", "dashboards", "levee.yml"), &prov)
	require.Len(t, prov.Providers, 1)
	require.Equal(t, filepath.Join(dir, "dashboards"), c.hostPath(t, "grafana", prov.Providers[0].Options.Path),
		"the provider reads the mounted dashboards directory")
	require.Equal(t, filepath.Join(dir, "provisioning"), c.hostPath(t, "grafana", "/etc/grafana/provisioning"))

	exprs := dashboardExprs(t)
	t.Logf("%d panels with queries", len(exprs))
}
