package queue_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/queue"
)

// URL is what the binaries log: never a password or token.
func TestURLHidesCredentials(t *testing.T) {
	tests := []struct{ url, want string }{
		{"", "nats://127.0.0.1:4222"},
		{"nats://n1:4222", "nats://n1:4222"},
		{"nats://levee:s3cret@n1:4222", "nats://redacted@n1:4222"},
		{"nats://t0ken@n1:4222", "nats://redacted@n1:4222"},
		{"tls://u:p@w:rd@n1:4222", "tls://redacted@n1:4222"},
		{"nats://u:s3cret@n1:4222,nats://n2:4222, nats://u:s3cret@n3:4222", "nats://redacted@n1:4222,nats://n2:4222, nats://redacted@n3:4222"},
		{"u:s3cret@n1:4222", "redacted@n1:4222"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			got := queue.URL(config.NATS{URL: tc.url, Embedded: config.Embedded{Listen: "127.0.0.1:4222"}})
			require.Equal(t, tc.want, got)
		})
	}
}
