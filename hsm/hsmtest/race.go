//go:build race

package hsmtest

// raceEnabled reports whether the race detector is on. It slows pure-Go
// arithmetic about tenfold (tjfoc/gmsm's SM2, crypto/ecdsa's P-384,
// crypto/rsa), so that some checks are sampled under it; see
// Backend.Messages.
const raceEnabled = true

// concurrentSigns is how many signatures each goroutine of the concurrency
// test makes; under the race detector the goroutines still overlap with
// fewer.
const concurrentSigns = 25
