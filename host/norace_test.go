//go:build !race

package host

// raceDetector is set when the tests run with the race detector, whose shadow memory
// and slower code make memory and time measurements of child processes meaningless.
const raceDetector = false
