package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCommandLine(t *testing.T) {
	got := commandLine([]string{"bin/loadgen", "bench", "-pg-dsn", "postgres://levee:s3cret@127.0.0.1:5432/levee", "-set", "a=b c", ""})
	require.Equal(t, `bin/loadgen bench -pg-dsn "postgres://levee:***@127.0.0.1:5432/levee" -set "a=b c" ""`, got)
}
