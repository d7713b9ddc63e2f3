// Package config holds shadowproxy's configuration: the Config type, its
// defaults, TOML parsing, environment overrides and validation.
//
// The life of a configuration is DefaultConfig → Parse (a TOML file) →
// ApplyEnv (secrets) → flags (in cmd/shadowproxy) → Validate. Validate
// returns every problem at once, each a *FieldError naming the TOML key, so a
// bad reload can be logged precisely and the running configuration kept.
package config
