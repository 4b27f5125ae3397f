// Package cluster runs Levee's scale-out topology as real processes on
// loopback (three clustered nats-server nodes with the EVENTS stream at R3,
// PostgreSQL, two ingest replicas, three workers) and tests it under load
// while faults are injected one after another: a worker, a NATS node (the
// stream leader), PostgreSQL and an ingest replica. With
// LEVEE_CLUSTER_BENCH=1 it also measures throughput figures (bench_test.go).
//
// scripts/cluster.sh runs the same topology by hand; docs/cluster.md shows
// both and the figures.
package cluster
