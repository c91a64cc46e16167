//go:build !race

package hsmtest

// raceEnabled reports whether the race detector is on.
const raceEnabled = false

// concurrentSigns is how many signatures each goroutine of the concurrency
// test makes.
const concurrentSigns = 100
