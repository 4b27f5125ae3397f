package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/levee-dev/levee/internal/ingest"
)

// spec is docs/openapi.yaml, with its schemas compiled.
type spec struct {
	doc      map[string]any
	compiler *jsonschema.Compiler
}

func loadSpec(t *testing.T) *spec {
	t.Helper()
	b, err := os.ReadFile("../../docs/openapi.yaml")
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(b, &doc))
	// Round-trip through JSON so that every number and map has the types
	// the schema compiler expects.
	j, err := json.Marshal(doc)
	require.NoError(t, err)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	require.NoError(t, c.AddResource("https://levee.local/openapi.json", inst))
	require.NoError(t, json.Unmarshal(j, &doc))
	return &spec{doc: doc, compiler: c}
}

func (s *spec) get(t *testing.T, path ...string) any {
	t.Helper()
	var cur any = s.doc
	for _, p := range path {
		m, ok := cur.(map[string]any)
		require.True(t, ok, "spec: %v is not an object", path)
		cur, ok = m[p]
		require.True(t, ok, "spec: missing %v", path)
	}
	return cur
}

// validate checks a response body against the schema the spec gives for
// the operation, status and content type.
func (s *spec) validate(t *testing.T, op []string, status int, body []byte) {
	t.Helper()
	ptr := "/paths"
	for _, p := range op {
		ptr += "/" + jsonPointerEscape(p)
	}
	ptr += fmt.Sprintf("/responses/%d/content/application~1json/schema", status)
	sch, err := s.compiler.Compile("https://levee.local/openapi.json#" + ptr)
	require.NoError(t, err, "the spec has a schema for %v %d", op, status)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	require.NoError(t, err, "%s", body)
	require.NoError(t, sch.Validate(inst), "answer %d %s does not match the spec", status, body)
}

func jsonPointerEscape(s string) string {
	out := ""
	for _, r := range s {
		switch r {
		case '~':
			out += "~0"
		case '/':
			out += "~1"
		default:
			out += string(r)
		}
	}
	return out
}

// startIngestEmbedded runs an ingest binary with an embedded NATS server
// and the given extra flags, and returns its base URL.
func startIngestEmbedded(t *testing.T, flags ...string) string {
	t.Helper()
	dir := t.TempDir()
	public := freePort(t)
	args := append([]string{
		"-ingest.listen", public, "-ingest.admin_listen", freePort(t),
		"-nats.embedded.listen", freePort(t), "-nats.embedded.store_dir", filepath.Join(dir, "nats"),
		"-degrade.spool.dir", filepath.Join(dir, "spool"), "-sink.sqlite.path", filepath.Join(dir, "db"),
	}, flags...)
	start(t, "ingest", args...)
	waitReady(t, public)
	return "http://" + public
}

// Every request example of the spec gets the answer its x-expect says, and
// every answer matches the spec's schema for its status.
func TestOpenAPIExamples(t *testing.T) {
	s := loadSpec(t)
	const key = "spec-test-key"
	url := startIngestEmbedded(t, "-ingest.auth.api_keys", "spec:"+ingest.HashKey(key))
	critical := startIngestEmbedded(t, "-degrade.force", "critical")

	content := s.get(t, "paths", "/v1/events", "post", "requestBody", "content").(map[string]any)
	types := make([]string, 0, len(content))
	for mt := range content {
		types = append(types, mt)
	}
	sort.Strings(types)
	n := 0
	for _, mt := range types {
		examples := content[mt].(map[string]any)["examples"].(map[string]any)
		for name, ex := range examples {
			ex := ex.(map[string]any)
			expect := ex["x-expect"].(map[string]any)
			var body []byte
			if str, ok := ex["value"].(string); ok && mt != "application/json" {
				body = []byte(str)
			} else {
				var err error
				body, err = json.Marshal(ex["value"])
				require.NoError(t, err)
			}
			t.Run(mt+"/"+name, func(t *testing.T) {
				status, resp, _ := postRaw(t, url+"/v1/events", mt, body, key)
				require.Equal(t, int(expect["status"].(float64)), status, "%s", resp)
				s.validate(t, []string{"/v1/events", "post"}, status, resp)
				if code, ok := expect["code"].(string); ok {
					var e struct{ Error struct{ Code string } }
					require.NoError(t, json.Unmarshal(resp, &e))
					require.Equal(t, code, e.Error.Code)
				}
			})
			n++
		}
	}
	require.GreaterOrEqual(t, n, 12)

	t.Run("401 without a key", func(t *testing.T) {
		status, resp, h := postRaw(t, url+"/v1/events", "application/json", []byte(`{"type":"a"}`), "")
		require.Equal(t, 401, status)
		require.NotEmpty(t, h.Get("WWW-Authenticate"))
		s.validate(t, []string{"/v1/events", "post"}, status, resp)
	})
	t.Run("405 for GET", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, url+"/v1/events", nil)
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 405, resp.StatusCode)
		s.validate(t, []string{"/v1/events", "post"}, 405, b)
	})
	t.Run("503 in critical mode", func(t *testing.T) {
		status, resp, h := postRaw(t, critical+"/v1/events", "application/json", []byte(`{"type":"a"}`), "")
		require.Equal(t, 503, status)
		require.NotEmpty(t, h.Get("Retry-After"))
		s.validate(t, []string{"/v1/events", "post"}, status, resp)
	})
	t.Run("the schemas reject a wrong answer", func(t *testing.T) {
		for status, body := range map[int]string{
			202: `{"accepted":1,"ids":["a"],"path":"elsewhere"}`,
			400: `{"error":{"code":"no_such_code","message":"x"}}`,
			413: `{"error":{"message":"no code"}}`,
		} {
			ptr := fmt.Sprintf("/paths/~1v1~1events/post/responses/%d/content/application~1json/schema", status)
			sch, err := s.compiler.Compile("https://levee.local/openapi.json#" + ptr)
			require.NoError(t, err)
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(body)))
			require.NoError(t, err)
			require.Error(t, sch.Validate(inst), "%d %s", status, body)
		}
	})
	t.Run("healthz and readyz", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz"} {
			resp, err := http.Get(url + p)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, 200, resp.StatusCode, p)
			s.get(t, "paths", p, "get", "responses", "200")
		}
	})
}

func postRaw(t *testing.T, url, contentType string, body []byte, key string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b, resp.Header
}
