// Package deploy holds the tests of the deployment artifacts under
// deploy/compose: the alert rules and their unit tests (promtool), the
// compose file (docker-compose config) and its consistency with Levee's
// config keys, NATS, Prometheus, HAProxy and Grafana files, and the metric
// names the rules and the dashboard use, checked against /metrics of the
// real binaries. None of them needs Docker.
package deploy
