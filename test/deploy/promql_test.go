package deploy

import (
	"fmt"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"
)

// selector is a metric named in a PromQL expression, with the label
// matchers written after it.
type selector struct {
	name     string
	matchers []matcher
}

type matcher struct{ label, op, value string }

// promQLRefs lists the metric selectors of a PromQL expression and the
// label names it groups or matches on (by, without, on, ignoring,
// group_left, group_right). It is a lexer, not a parser: enough for the
// expressions of alerts.yml and the dashboard, and it fails on what it does
// not understand rather than skipping it.
func promQLRefs(expr string) (sels []selector, grouping []string, err error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return nil, nil, err
	}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		next := func(k int) token {
			if i+k < len(toks) {
				return toks[i+k]
			}
			return token{}
		}
		switch {
		case tk.kind == tokMatchers:
			return nil, nil, fmt.Errorf("selector without a metric name at %q", tk.text)
		case tk.kind != tokIdent:
		case groupingKeywords[tk.text]:
			if next(1).text == "(" {
				j := i + 2
				for ; j < len(toks) && toks[j].text != ")"; j++ {
					if toks[j].kind == tokIdent {
						grouping = append(grouping, toks[j].text)
					}
				}
				i = j
			}
		case keywords[tk.text] || aggregations[tk.text]:
		case next(1).text == "(":
			// a function call
		default:
			s := selector{name: tk.text}
			if next(1).kind == tokMatchers {
				s.matchers = next(1).matchers
				i++
			}
			sels = append(sels, s)
		}
	}
	return sels, grouping, nil
}

var (
	groupingKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	keywords         = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true, "Inf": true, "NaN": true}
	aggregations     = map[string]bool{"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
		"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true}
)

type tokenKind int

const (
	tokPunct tokenKind = iota
	tokIdent
	tokNumber
	tokString
	tokMatchers
)

type token struct {
	kind     tokenKind
	text     string
	matchers []matcher
}

func lexPromQL(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := rune(s[i])
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '#': // comment to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			end, err := stringEnd(s, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tokString, text: s[i:end]})
			i = end
		case c == '[': // range or subquery: durations and $__rate_interval
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed [ in %q", s)
			}
			i += end + 1
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("unclosed { in %q", s)
			}
			ms, err := parseMatchers(s[i+1 : i+end])
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tokMatchers, text: s[i : i+end+1], matchers: ms})
			i += end + 1
		case c == '_' || c == ':' || unicode.IsLetter(c):
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == ':' || unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j]))) {
				j++
			}
			toks = append(toks, token{kind: tokIdent, text: s[i:j]})
			i = j
		case unicode.IsDigit(c) || c == '.':
			j := i
			for j < len(s) && (s[j] == '.' || unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j]))) {
				j++
			}
			toks = append(toks, token{kind: tokNumber, text: s[i:j]})
			i = j
		case strings.ContainsRune("()+-*/%^=!<>,", c):
			toks = append(toks, token{kind: tokPunct, text: string(c)})
			i++
		default:
			return nil, fmt.Errorf("unexpected %q in %q", c, s)
		}
	}
	return toks, nil
}

// stringEnd returns the index after the string literal starting at i.
func stringEnd(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unclosed string in %q", s)
}

func parseMatchers(s string) ([]matcher, error) {
	var ms []matcher
	for rest := strings.TrimSpace(s); rest != ""; {
		j := 0
		for j < len(rest) && (rest[j] == '_' || unicode.IsLetter(rune(rest[j])) || unicode.IsDigit(rune(rest[j]))) {
			j++
		}
		label := rest[:j]
		rest = strings.TrimSpace(rest[j:])
		var op string
		for _, o := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(rest, o) {
				op = o
				break
			}
		}
		if label == "" || op == "" {
			return nil, fmt.Errorf("bad label matcher in {%s}", s)
		}
		rest = strings.TrimSpace(rest[len(op):])
		if rest == "" || !strings.ContainsRune(`"'`+"`", rune(rest[0])) {
			return nil, fmt.Errorf("bad label matcher in {%s}", s)
		}
		end, err := stringEnd(rest, 0)
		if err != nil {
			return nil, err
		}
		ms = append(ms, matcher{label: label, op: op, value: rest[1 : end-1]})
		rest = strings.TrimPrefix(strings.TrimSpace(rest[end:]), ",")
		rest = strings.TrimSpace(rest)
	}
	return ms, nil
}

func TestPromQLRefs(t *testing.T) {
	sels, grouping, err := promQLRefs(`histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{job="x", code=~"5.."}[5m])))
		/ ignoring (kind) group_left sum(rate(b_total[$__rate_interval])) > 0.5
		unless on (instance) c == 1 or absent(up{job="w"}) and max_over_time(d[1m]) offset 5m`)
	require.NoError(t, err)
	var names []string
	for _, s := range sels {
		names = append(names, s.name)
	}
	require.Equal(t, []string{"a_bucket", "b_total", "c", "up", "d"}, names)
	require.Equal(t, []matcher{{"job", "=", "x"}, {"code", "=~", "5.."}}, sels[0].matchers)
	require.Equal(t, []string{"job", "le", "kind", "instance"}, grouping)

	_, _, err = promQLRefs(`{__name__="x"}`)
	require.Error(t, err)
}
