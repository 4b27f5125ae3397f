package deploy

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func promtool(t *testing.T) string {
	return tool(t, "promtool", "/usr/bin/promtool")
}

// TestAlertRules runs promtool on the rules, their unit tests and the
// Prometheus config that loads them.
func TestAlertRules(t *testing.T) {
	pt := promtool(t)
	dir := filepath.Join(composeDir(t), "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		{"check", "config", "prometheus.yml"},
	} {
		t.Run(args[0]+" "+args[1]+" "+args[2], func(t *testing.T) {
			out := run(t, dir, nil, time.Minute, pt, args...)
			t.Log(out)
		})
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func alertRules(t *testing.T) []rule {
	var f ruleFile
	readYAML(t, filepath.Join(composeDir(t), "prometheus", "alerts.yml"), &f)
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	require.NotEmpty(t, rules)
	return rules
}

type ruleTests struct {
	Tests []struct {
		Name          string `json:"name"`
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `json:"exp_labels"`
				ExpAnnotations map[string]string `json:"exp_annotations"`
			} `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// TestAlertConventions checks what promtool does not: every alert has a
// severity of page or ticket, a summary and a runbook, and the unit tests
// have, for every alert, a case where it fires (with labels and
// annotations) and one where it does not.
func TestAlertConventions(t *testing.T) {
	rules := alertRules(t)
	var tests ruleTests
	readYAML(t, filepath.Join(composeDir(t), "prometheus", "alerts_test.yml"), &tests)
	fires, quiet := map[string]int{}, map[string]int{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) == 0 {
				quiet[a.Alertname]++
				continue
			}
			fires[a.Alertname]++
			for _, e := range a.ExpAlerts {
				require.NotEmpty(t, e.ExpLabels["severity"], "%s: a firing case without exp_labels.severity", tc.Name)
				require.NotEmpty(t, e.ExpAnnotations["summary"], "%s: a firing case without exp_annotations", tc.Name)
			}
		}
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		require.False(t, seen[r.Alert], "alert %s defined twice", r.Alert)
		seen[r.Alert] = true
		require.Contains(t, []string{"page", "ticket"}, r.Labels["severity"], "%s: labels.severity", r.Alert)
		require.NotEmpty(t, r.Annotations["summary"], "%s: annotations.summary", r.Alert)
		require.NotEmpty(t, r.Annotations["runbook"], "%s: annotations.runbook", r.Alert)
		require.NotContains(t, r.Annotations["runbook"], "\n", "%s: the runbook is one line", r.Alert)
		require.Positive(t, fires[r.Alert], "%s: no test case where it fires", r.Alert)
		require.Positive(t, quiet[r.Alert], "%s: no test case where it does not fire", r.Alert)
	}
	for name := range fires {
		require.True(t, seen[name], "alerts_test.yml tests an alert that does not exist: %s", name)
	}
}
