//go:build race

package web

// slowdown is how much longer the race detector makes CPU-bound work: timing bounds in
// tests are multiplied by it.
const slowdown = 20

// raceDetector is set when the tests run with the race detector, whose shadow memory
// makes memory measurements meaningless.
const raceDetector = true
