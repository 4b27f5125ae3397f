package degrade

import (
	"github.com/levee-dev/levee/internal/config"
)

// SpoolOptionsFrom extracts the spool's options from a configuration.
func SpoolOptionsFrom(cfg *config.Config) SpoolOptions {
	s := cfg.Degrade.Spool
	return SpoolOptions{Dir: s.Dir, MaxBytes: s.MaxBytes, SegmentBytes: s.SegmentBytes, SyncInterval: s.SyncInterval}
}

// ModeSettingsFrom extracts the mode thresholds from a configuration.
func ModeSettingsFrom(cfg *config.Config) ModeSettings {
	d := cfg.Degrade
	return ModeSettings{Force: d.Force, NormalAfter: d.NormalAfter, CriticalAbove: d.CriticalAbove, CriticalBelow: d.CriticalBelow}
}

// ReplaySettingsFrom extracts the replayer's settings from a configuration.
func ReplaySettingsFrom(cfg *config.Config) ReplaySettings {
	r := cfg.Degrade.Replay
	return ReplaySettings{Headroom: r.Headroom, BatchEvents: r.BatchEvents, Timeout: cfg.Ingest.PublishTimeout}
}

// BreakerSettingsFrom extracts the breaker's settings from a configuration.
func BreakerSettingsFrom(cfg *config.Config) BreakerSettings {
	b := cfg.Degrade.Breaker
	return BreakerSettings{Enabled: cfg.Optimization.Degrade, Failures: uint32(b.Failures), OpenFor: b.OpenFor}
}
