package config

import "fmt"

// Phase is one state of the migration toggle. The order of the constants is
// the order of a migration: each phase moves authority one step from the old
// database to the new one.
type Phase int

const (
	// OldOnly forwards everything to the old database; the proxy is transparent.
	OldOnly Phase = iota + 1
	// DualWrite keeps old authoritative and mirrors writes into new.
	DualWrite
	// ShadowRead is DualWrite plus reads shadowed to new and compared.
	ShadowRead
	// NewPrimary writes new first, best effort to old; reads from new with
	// read-through fallback to old.
	NewPrimary
	// NewWriteOnly freezes old; reads from new with fallback to old.
	NewWriteOnly
	// NewOnly leaves old untouched.
	NewOnly
)

var phaseNames = [...]string{
	OldOnly:      "old-only",
	DualWrite:    "dual-write",
	ShadowRead:   "shadow-read",
	NewPrimary:   "new-primary",
	NewWriteOnly: "new-write-only",
	NewOnly:      "new-only",
}

// String returns the phase's configuration name, e.g. "dual-write".
func (p Phase) String() string {
	if p < OldOnly || p > NewOnly {
		return fmt.Sprintf("phase(%d)", int(p))
	}
	return phaseNames[p]
}

// ParsePhase returns the phase named s.
func ParsePhase(s string) (Phase, error) {
	for p := OldOnly; p <= NewOnly; p++ {
		if phaseNames[p] == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown phase %q (want one of old-only, dual-write, shadow-read, new-primary, new-write-only, new-only)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (p Phase) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler so TOML can hold names.
func (p *Phase) UnmarshalText(b []byte) error {
	v, err := ParsePhase(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}
