package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/levee-dev/levee/internal/config"
)

// Keys holds the accepted API keys as SHA-256 digests. A presented key is
// hashed and compared with every digest in constant time, so neither the
// comparison nor the number of digests tried reveals anything about a key.
type Keys struct {
	names   []string
	digests [][sha256.Size]byte
}

// NewKeys returns the key set of cfg, whose digests were validated by config.
func NewKeys(cfg []config.APIKey) *Keys {
	k := &Keys{}
	for _, c := range cfg {
		var d [sha256.Size]byte
		if b, err := hex.DecodeString(c.SHA256); err == nil && len(b) == sha256.Size {
			copy(d[:], b)
			k.names = append(k.names, c.Name)
			k.digests = append(k.digests, d)
		}
	}
	return k
}

// Enabled reports whether any key is configured; with none, auth is off.
func (k *Keys) Enabled() bool { return len(k.digests) > 0 }

// Check returns the name of the key presented, if it is one of the set.
func (k *Keys) Check(presented string) (name string, ok bool) {
	sum := sha256.Sum256([]byte(presented))
	match := -1
	for i := range k.digests {
		if subtle.ConstantTimeCompare(sum[:], k.digests[i][:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return "", false
	}
	return k.names[match], true
}

// presentedKey returns the API key of a request: "Authorization: Bearer KEY"
// or "X-API-Key: KEY".
func presentedKey(r *http.Request) string {
	if v := r.Header.Get("X-API-Key"); v != "" {
		return strings.TrimSpace(v)
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token)
	}
	return ""
}

// HashKey returns the SHA-256 hex digest of key, the form api_keys expects.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
