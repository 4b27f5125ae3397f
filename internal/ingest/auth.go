package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"time"

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

// Names returns the names of the keys, in configuration order.
func (k *Keys) Names() []string { return slices.Clone(k.names) }

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

// authenticate returns the name of the request's API key ("none" with auth
// off), after taking a token from that key's rate limit; a request over
// the limit gets its key's name and a 429. Only the name is ever logged or
// exported, never the key.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, s *Settings) (string, *Error) {
	key := "none"
	if s.Keys.Enabled() {
		presented := presentedKey(r)
		name, ok := s.Keys.Check(presented)
		if !ok {
			reason := "invalid"
			if presented == "" {
				reason = "missing"
			}
			h.m.authFailures.WithLabelValues(reason).Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="levee"`)
			return "", &Error{Status: http.StatusUnauthorized, Code: "unauthorized",
				Message: "a valid API key is required (Authorization: Bearer KEY or X-API-Key: KEY)"}
		}
		key = name
	}
	h.m.byKey.WithLabelValues(key).Inc()
	if wait, ok := h.limits.allow(key, time.Now()); !ok {
		return key, &Error{Status: http.StatusTooManyRequests, Code: "rate_limited", RetryAfter: retryAfter(wait),
			Message: "this API key is over its request rate (ingest.auth.rate_limit); retry after Retry-After seconds"}
	}
	return key, nil
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
