// Package loadgen drives load against Levee's ingest API and measures what
// the pipeline does with it: client-side latency and outcomes (HDR
// histograms, coordinated-omission-free open loop), the services' queue,
// spool and sink metrics, process CPU and memory, and an exact count check
// of the sink against the ids that were accepted. It also orchestrates the
// before/after scenarios of the load-test plan and renders their report.
package loadgen
