package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigIsValid(t *testing.T) {
	c, err := Load("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// The example documents the defaults: loading it must change nothing
	// but the URL.
	d := DefaultConfig()
	d.Old = c.Old
	if !reflect.DeepEqual(d, c) {
		t.Fatalf("example differs from the defaults:\n%+v\n%+v", c, d)
	}
}

func TestParseAndValidate(t *testing.T) {
	good := `old = "postgres://u:p@db:5432/app"` + "\n"
	verifier := "SCRAM-SHA-256$4096:c2FsdA==$" + b64(32) + ":" + b64(32)
	for _, tc := range []struct {
		name      string
		toml      string
		wantField string // "" = valid
	}{
		{"minimal", good, ""},
		{"all fields", good + `
listen = "0.0.0.0:7000"
admin = ""
new = "mysql://u:p@127.0.0.1:3306/app"
phase = "old-only"
[limits]
max_client_conns = 10
idle_timeout = "5m"
[auth]
mode = "users"
[[auth.users]]
name = "app"
scram_verifier = "` + verifier + `"`, ""},
		{"missing old", `listen = "127.0.0.1:1"`, "old"},
		{"bad old scheme", `old = "mysql://x@y/z"`, "old"},
		{"bad new scheme", good + `new = "redis://x"`, "new"},
		{"bad listen", good + `listen = "nope"`, "listen"},
		{"unknown phase", good + `phase = "sideways"`, ""},
		{"unimplemented phase", good + `phase = "new-only"` + "\n" + `new = "postgres://x@y/z"`, "phase"},
		{"bad sample rate", good + "[shadow]\nsample_rate = 1.5", "shadow.sample_rate"},
		{"negative batch window", good + "[shadow]\nbatch_window = \"-1ms\"", "shadow.batch_window"},
		{"batch size 0", good + "[shadow]\nbatch_size = 0", "shadow.batch_size"},
		{"negative max_tx_bytes", good + "[mirror]\nmax_tx_bytes = -1", "mirror.max_tx_bytes"},
		{"zero max_group", good + "[mirror]\nmax_group = 0", "mirror.max_group"},
		{"groups off", good + "[mirror]\nmax_group = 1", ""},
		{"zero max_group_bytes", good + "[mirror]\nmax_group_bytes = 0", "mirror.max_group_bytes"},
		{"negative group linger", good + "[mirror]\ngroup_linger = \"-1ms\"", "mirror.group_linger"},
		{"group linger too long", good + "[mirror]\ngroup_linger = \"1s\"", "mirror.group_linger"},
		{"group linger off", good + "[mirror]\ngroup_linger = \"0s\"", ""},
		{"negative busy poll", good + "[loop]\nbusy_poll = \"-1us\"", "loop.busy_poll"},
		{"busy poll too long", good + "[loop]\nbusy_poll = \"5ms\"", "loop.busy_poll"},
		{"phase without new", good + `phase = "dual-write"`, "new"},
		{"dual-write without mirror dir", good + `phase = "dual-write"` + "\n" + `new = "postgres://x@y/z"`, "mirror.dir"},
		{"unknown key", good + `lisen = "x"`, "lisen"},
		{"bad log format", good + "[log]\nformat = \"xml\"", "log.format"},
		{"cert without key", good + "[tls]\ncert_file = \"a.pem\"", "tls"},
		{"users mode without users", good + "[auth]\nmode = \"users\"", "auth.users"},
		{"bad verifier", good + "[auth]\nmode = \"users\"\n[[auth.users]]\nname = \"a\"\nscram_verifier = \"md5abc\"", "auth.users[0].scram_verifier"},
		{"zero conns", good + "[limits]\nmax_client_conns = 0", "limits.max_client_conns"},
		{"tiny messages", good + "[limits]\nmax_message_size = 10", "limits.max_message_size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			err := c.Parse(strings.NewReader(tc.toml))
			if err == nil {
				err = c.Validate()
			}
			if tc.wantField == "" && tc.name != "unknown phase" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tc.wantField == "" {
				return // any error will do (the phase name is checked by the TOML decoder)
			}
			if !hasField(err, tc.wantField) {
				t.Fatalf("error %v does not name field %q", err, tc.wantField)
			}
		})
	}
}

func hasField(err error, field string) bool {
	var fe *FieldError
	if errors.As(err, &fe) && fe.Field == field {
		return true
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if hasField(e, field) {
				return true
			}
		}
	}
	return false
}

func b64(n int) string {
	const s = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	// n bytes of zero in base64, padded.
	l := (n + 2) / 3 * 4
	out := []byte(s[:l])
	switch n % 3 {
	case 1:
		out[l-1], out[l-2] = '=', '='
	case 2:
		out[l-1] = '='
	}
	return string(out)
}

func TestEnvOverridesAndRedaction(t *testing.T) {
	c := DefaultConfig()
	c.Old = "postgres://file@x/y"
	env := map[string]string{EnvOld: "postgres://app:s3cret@db/app?password=also"}
	c.ApplyEnv(func(k string) string { return env[k] })
	if c.Old != env[EnvOld] {
		t.Fatal("env did not override old")
	}
	r := RedactURL(c.Old)
	if strings.Contains(r, "s3cret") || strings.Contains(r, "also") {
		t.Fatalf("redacted URL leaks a secret: %s", r)
	}
	// The URL parse error must not echo the URL either.
	c.Old = "postgres://app:s3cret@db:bad port/app"
	err := c.Validate()
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("validation error leaks or is missing: %v", err)
	}
}

func TestDurationsParse(t *testing.T) {
	c := DefaultConfig()
	if err := c.Parse(strings.NewReader("[limits]\nidle_timeout = \"90s\"")); err != nil {
		t.Fatal(err)
	}
	if c.Limits.IdleTimeout != 90*time.Second {
		t.Fatalf("idle_timeout = %v", c.Limits.IdleTimeout)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/shadowproxy.toml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

func TestSCRAMVerifier(t *testing.T) {
	v, err := ParseSCRAMVerifier("SCRAM-SHA-256$4096:c2FsdA==$" + b64(32) + ":" + b64(32))
	if err != nil {
		t.Fatal(err)
	}
	if v.Iterations != 4096 || string(v.Salt) != "salt" || len(v.StoredKey) != 32 {
		t.Fatalf("%+v", v)
	}
	for _, bad := range []string{"", "md5abc", "SCRAM-SHA-256$x:c2FsdA==$a:b", "SCRAM-SHA-256$4096:c2FsdA==$" + b64(16) + ":" + b64(32)} {
		if _, err := ParseSCRAMVerifier(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
