package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"

	"github.com/levee-dev/levee/configs"
)

// DefaultFile is read when no -config flag is given and the file exists.
const DefaultFile = "configs/levee.yaml"

// EnvPrefix starts every environment variable Levee reads.
const EnvPrefix = "LEVEE_"

// Source says where a configuration comes from, besides the built-in defaults.
type Source struct {
	File    string            // config file; "" = DefaultFile when it exists
	Flags   map[string]string // key → value given on the command line
	Environ func() []string   // nil = os.Environ
}

// ParseFlags registers -config and one flag per config key on fs, parses
// args, and returns the resulting Source. The caller may register its own
// flags on fs first.
func ParseFlags(fs *flag.FlagSet, args []string) (Source, error) {
	keys, err := Keys()
	if err != nil {
		return Source{}, err
	}
	file := fs.String("config", "", "config file (default "+DefaultFile+" when present)")
	vals := make(map[string]*string, len(keys))
	for _, k := range keys {
		vals[k] = fs.String(k, "", "config key "+k+" (see configs/levee.yaml)")
	}
	if err := fs.Parse(args); err != nil {
		return Source{}, err
	}
	if fs.NArg() > 0 {
		return Source{}, fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}
	src := Source{File: *file, Flags: map[string]string{}}
	fs.Visit(func(f *flag.Flag) {
		if v, ok := vals[f.Name]; ok {
			src.Flags[f.Name] = *v
		}
	})
	return src, nil
}

// Keys returns every configuration key, sorted.
func Keys() ([]string, error) {
	k, err := defaults()
	if err != nil {
		return nil, err
	}
	keys := k.Keys()
	sort.Strings(keys)
	return keys, nil
}

// Load builds the configuration from the defaults and src, and validates it.
// Errors name the offending key and where it came from.
func Load(src Source) (*Config, error) {
	k, err := load(src)
	if err != nil {
		return nil, err
	}
	return decode(k)
}

func defaults() (*koanf.Koanf, error) {
	k := koanf.New(".")
	if err := k.Load(rawbytes.Provider(configs.Default), yaml.Parser()); err != nil {
		return nil, fmt.Errorf("config: built-in defaults: %w", err)
	}
	return k, nil
}

func load(src Source) (*koanf.Koanf, error) {
	k, err := defaults()
	if err != nil {
		return nil, err
	}
	known := k.KeyMap()

	file := src.File
	if file == "" {
		if _, err := os.Stat(DefaultFile); err == nil {
			file = DefaultFile
		}
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		layer := koanf.New(".")
		if err := layer.Load(rawbytes.Provider(b), yaml.Parser()); err != nil {
			return nil, fmt.Errorf("config: %s: %w", file, err)
		}
		if err := merge(k, layer, known, "file "+file); err != nil {
			return nil, err
		}
	}

	environ := src.Environ
	if environ == nil {
		environ = os.Environ
	}
	names := map[string]string{}
	layer := koanf.New(".")
	err = layer.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: environ,
		TransformFunc: func(name, v string) (string, any) {
			key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, EnvPrefix), "__", "."))
			names[key] = name
			return key, v
		},
	}), nil)
	if err != nil {
		return nil, fmt.Errorf("config: environment: %w", err)
	}
	for _, key := range layer.Keys() {
		if _, ok := known[key]; !ok {
			return nil, fmt.Errorf("config: unknown key %q (from environment variable %s)", key, names[key])
		}
	}
	if err := merge(k, layer, known, "environment"); err != nil {
		return nil, err
	}

	flat := make(map[string]any, len(src.Flags))
	for key, v := range src.Flags {
		flat[key] = v
	}
	layer = koanf.New(".")
	if err := layer.Load(confmap.Provider(flat, "."), nil); err != nil {
		return nil, fmt.Errorf("config: flags: %w", err)
	}
	if err := merge(k, layer, known, "flags"); err != nil {
		return nil, err
	}
	return k, nil
}

// merge checks that every key of layer is known, then merges it into k.
// A map given where a value is expected (or the reverse) is also an error.
func merge(k, layer *koanf.Koanf, known koanf.KeyMap, from string) error {
	var unknown []string
	for _, key := range layer.Keys() {
		if _, ok := known[key]; !ok {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("config: unknown key %s (from %s)", strings.Join(quoteAll(unknown), ", "), from)
	}
	return k.Merge(layer)
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func decode(k *koanf.Koanf) (*Config, error) {
	var cfg Config
	err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				mapstructure.StringToTimeDurationHookFunc(),
				stringToSliceHook,
				stringToAPIKeyHook,
			),
			ErrorUnused:      true,
			WeaklyTypedInput: true,
			Result:           &cfg,
			TagName:          "koanf",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", cleanDecodeError(err))
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// stringToSliceHook splits a comma-separated string (from the environment or
// a flag) into a list; an empty string is an empty list.
func stringToSliceHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Slice {
		return data, nil
	}
	s := strings.TrimSpace(data.(string))
	if s == "" || s == "[]" {
		return []string{}, nil
	}
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts, nil
}

// stringToAPIKeyHook reads the "name:sha256hex" form of an API key.
func stringToAPIKeyHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to != reflect.TypeFor[APIKey]() {
		return data, nil
	}
	name, digest, ok := strings.Cut(data.(string), ":")
	if !ok {
		return nil, errors.New(`api key must be "name:sha256hex" or {name: ..., sha256: ...}`)
	}
	return APIKey{Name: strings.TrimSpace(name), SHA256: strings.TrimSpace(digest)}, nil
}

// cleanDecodeError turns mapstructure's wording into "key: problem" lines.
func cleanDecodeError(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "decoding failed due to the following error(s):\n\n")
	lines := slices.DeleteFunc(strings.Split(msg, "\n"), func(s string) bool { return strings.TrimSpace(s) == "" })
	return errors.New(strings.Join(lines, "; "))
}
