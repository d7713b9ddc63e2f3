package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SCRAMVerifier is a parsed pg_authid SCRAM-SHA-256 verifier: what a server
// needs to check a client's proof without knowing its password.
type SCRAMVerifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

// ParseSCRAMVerifier parses "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>"
// (salt and keys in base64), the form Postgres stores in pg_authid.rolpassword.
func ParseSCRAMVerifier(s string) (*SCRAMVerifier, error) {
	if s == "" {
		return nil, errors.New("required")
	}
	rest, ok := strings.CutPrefix(s, "SCRAM-SHA-256$")
	if !ok {
		return nil, errors.New("want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>")
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return nil, errors.New("missing keys after the second '$'")
	}
	iterS, saltS, ok := strings.Cut(params, ":")
	if !ok {
		return nil, errors.New("want <iterations>:<salt>")
	}
	iter, err := strconv.Atoi(iterS)
	if err != nil || iter <= 0 {
		return nil, fmt.Errorf("bad iteration count %q", iterS)
	}
	storedS, serverS, ok := strings.Cut(keys, ":")
	if !ok {
		return nil, errors.New("want <StoredKey>:<ServerKey>")
	}
	v := &SCRAMVerifier{Iterations: iter}
	for _, p := range []struct {
		name string
		in   string
		out  *[]byte
	}{{"salt", saltS, &v.Salt}, {"StoredKey", storedS, &v.StoredKey}, {"ServerKey", serverS, &v.ServerKey}} {
		b, err := base64.StdEncoding.DecodeString(p.in)
		if err != nil {
			return nil, fmt.Errorf("%s is not base64", p.name)
		}
		*p.out = b
	}
	if len(v.StoredKey) != 32 || len(v.ServerKey) != 32 {
		return nil, errors.New("StoredKey and ServerKey must be 32 bytes (SHA-256)")
	}
	return v, nil
}
