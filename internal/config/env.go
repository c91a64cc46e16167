package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every configuration environment variable.
const EnvPrefix = "GOVTRUST_"

// foreignEnv lists GOVTRUST_* variables that are not configuration keys but
// belong to other parts of the product; they are not errors.
var foreignEnv = map[string]bool{
	"GOVTRUST_P11_CONF": true, // the SM2 software token's own configuration
	"GOVTRUST_P11_DIR":  true,
}

// EnvKeys returns every configuration environment variable, sorted, with the
// YAML key it sets. GOVTRUST_LISTEN_HTTP sets listen.http.
func EnvKeys() map[string]string {
	out := map[string]string{}
	walk(reflect.ValueOf(&Config{}).Elem(), "", func(key string, _ reflect.Value) {
		out[envName(key)] = key
	})
	return out
}

func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// walk calls fn for every leaf field with its dotted YAML key.
func walk(v reflect.Value, prefix string, fn func(key string, f reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		f := v.Field(i)
		if f.Kind() == reflect.Slice {
			continue // lists are set in the file only
		}
		if f.Kind() == reflect.Struct && f.Type() != reflect.TypeOf(time.Duration(0)) {
			walk(f, key, fn)
			continue
		}
		fn(key, f)
	}
}

// applyEnv sets fields from GOVTRUST_* variables. An unknown variable is an error.
func applyEnv(c *Config, environ []string) error {
	fields := map[string]reflect.Value{}
	keys := map[string]string{}
	walk(reflect.ValueOf(c).Elem(), "", func(key string, f reflect.Value) {
		fields[envName(key)] = f
		keys[envName(key)] = key
	})
	var unknown []string
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || foreignEnv[name] {
			continue
		}
		f, ok := fields[name]
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		if err := setField(f, val); err != nil {
			return fmt.Errorf("environment %s (%s): %w", name, keys[name], err)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("environment: unknown configuration variable(s) %s", strings.Join(unknown, ", "))
	}
	return nil
}

func setField(f reflect.Value, val string) error {
	switch {
	case f.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(val)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
	case f.Type() == reflect.TypeOf(SecretRef("")):
		f.SetString(val)
	case f.Kind() == reflect.String:
		f.SetString(val)
	case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return err
		}
		f.SetInt(n)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return err
		}
		f.SetBool(b)
	default:
		return fmt.Errorf("unsupported field kind %s", f.Kind())
	}
	return nil
}
