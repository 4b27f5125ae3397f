package loadgen

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// it is 100 on every Linux architecture Go supports.
const clockTicks = 100

// ProcStat is one reading of a process's CPU time and resident memory.
type ProcStat struct {
	At     time.Time
	CPU    time.Duration // user + system time since the process started
	RSSKiB int64
}

// ReadProc reads /proc/<pid>/stat and /proc/<pid>/status.
func ReadProc(pid int) (ProcStat, error) {
	at := time.Now()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStat{}, fmt.Errorf("loadgen: read process %d: %w", pid, err)
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return ProcStat{}, fmt.Errorf("loadgen: process %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcStat{}, fmt.Errorf("loadgen: read process %d: %w", pid, err)
	}
	return ProcStat{At: at, CPU: cpu, RSSKiB: parseVmRSS(status)}, nil
}

// parseStatCPU returns utime + stime from the contents of /proc/<pid>/stat.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed stat: %d fields", len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed stat: utime %q stime %q", f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// parseVmRSS returns VmRSS in KiB from /proc/<pid>/status (0 if absent,
// as for a zombie).
func parseVmRSS(status []byte) int64 {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		return n
	}
	return 0
}

// CPUPercent is the CPU used between two readings, in % of one core.
func CPUPercent(a, b ProcStat) float64 {
	wall := b.At.Sub(a.At)
	if wall <= 0 {
		return 0
	}
	return 100 * float64(b.CPU-a.CPU) / float64(wall)
}

// HostStat is one reading of the machine's CPU time from /proc/stat.
type HostStat struct {
	Busy, Total int64 // clock ticks over all cores
}

// ReadHost reads the aggregate "cpu" line of /proc/stat.
func ReadHost() (HostStat, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return HostStat{}, fmt.Errorf("loadgen: read /proc/stat: %w", err)
	}
	return parseHostStat(b)
}

func parseHostStat(b []byte) (HostStat, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return HostStat{}, fmt.Errorf("loadgen: malformed /proc/stat")
	}
	var h HostStat
	// user nice system idle iowait irq softirq steal (guest time is already in user).
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return HostStat{}, fmt.Errorf("loadgen: malformed /proc/stat: %w", err)
		}
		h.Total += n
		if i != 3 && i != 4 { // idle, iowait
			h.Busy += n
		}
	}
	return h, nil
}

// HostCPUPercent is the machine's busy CPU between two readings, in % of
// one core (up to nproc × 100).
func HostCPUPercent(a, b HostStat, nproc int) float64 {
	if b.Total <= a.Total {
		return 0
	}
	return 100 * float64(nproc) * float64(b.Busy-a.Busy) / float64(b.Total-a.Total)
}
