//go:build !linux

package mirror

// lowerPriority does nothing off Linux, where a thread's priority cannot
// be set apart from its process's.
func lowerPriority() {}
