// Package config loads govtrust's configuration: one YAML file, then
// GOVTRUST_* environment variables, then command-line flags (applied by the
// caller), in that order of precedence over the defaults of Defaults.
//
// Decoding is strict: an unknown key in the file is an error naming the key and
// its line, and an unknown GOVTRUST_* variable is an error naming the variable,
// so a typo never silently leaves a default in force. Every section has a
// Validate method; Config.Validate runs them all. Secrets are never written
// inline: a SecretRef names a file ("file:/run/secrets/pg") or an environment
// variable ("env:PGPASSWORD") and is read only when needed.
package config
