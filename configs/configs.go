// Package configs holds Levee's documented default configuration, embedded so
// that the binaries' built-in defaults are exactly what levee.yaml documents.
package configs

import _ "embed"

// Default is levee.yaml: every key with its default value and its meaning.
//
//go:embed levee.yaml
var Default []byte
