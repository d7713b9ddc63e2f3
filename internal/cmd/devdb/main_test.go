package main

import (
	"os/exec"
	"testing"
)

func TestRenderEnvRoundTrip(t *testing.T) {
	// What the demo script reads back with `source` must be exactly what
	// devdb wrote, whatever a URL or path contains.
	tests := []string{
		"postgres://demo:demo@127.0.0.1:5432/demo?sslmode=disable",
		"it's",
		"'",
		`$HOME "quoted" \back\slash`,
		"two\nlines",
		"",
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range tests {
		script := renderEnv([]envVar{{"V", want}}) + `printf '%s' "$V"`
		out, err := exec.Command(sh, "-c", script).Output()
		if err != nil {
			t.Fatalf("sh -c %q: %v", script, err)
		}
		if got := string(out); got != want {
			t.Errorf("round trip of %q gave %q", want, got)
		}
	}
}
