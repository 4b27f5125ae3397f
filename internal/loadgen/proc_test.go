package loadgen

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseProc(t *testing.T) {
	// A command name with spaces and a parenthesis; utime 250, stime 50 ticks.
	stat := []byte("1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n")
	cpu, err := parseStatCPU(stat)
	require.NoError(t, err)
	require.Equal(t, 3*time.Second, cpu)
	_, err = parseStatCPU([]byte("1234 (x) S 1"))
	require.Error(t, err)

	status := []byte("Name:\tingest\nVmPeak:\t  900000 kB\nVmRSS:\t   51234 kB\nThreads:\t9\n")
	require.EqualValues(t, 51234, parseVmRSS(status))
	require.Zero(t, parseVmRSS([]byte("Name:\tzombie\n")))

	a := ProcStat{At: time.Unix(0, 0), CPU: time.Second}
	b := ProcStat{At: time.Unix(2, 0), CPU: 4 * time.Second}
	require.InDelta(t, 150, CPUPercent(a, b), 1e-9) // 3 s of CPU in 2 s of wall: 1.5 cores
}

func TestReadProcSelf(t *testing.T) {
	st, err := ReadProc(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, st.RSSKiB)
	_, err = ReadProc(1 << 30)
	require.Error(t, err)
}

func TestHostStat(t *testing.T) {
	a, err := parseHostStat([]byte("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n"))
	require.NoError(t, err)
	require.Equal(t, HostStat{Busy: 150, Total: 1000}, a)
	b := HostStat{Busy: 250, Total: 1200}
	// 100 busy ticks of 200 on 2 cores: one core's worth.
	require.InDelta(t, 100, HostCPUPercent(a, b, 2), 1e-9)
	_, err = parseHostStat([]byte("intr 1 2 3\n"))
	require.Error(t, err)
	_, err = ReadHost()
	require.NoError(t, err)
}
