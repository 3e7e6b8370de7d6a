// Package host is the SDK's side of the cocoon host imports (SPEC.md §4): the real
// imports in wasip1 builds, and stand-ins that make the SDK usable in native tests.
package host
