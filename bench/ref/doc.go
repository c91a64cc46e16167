// Package ref measures the reference rates that every govtrust benchmark is
// judged against: this machine's raw SM2 and ECDSA P-256 signing and
// verification throughput on all cores, with no service, storage or network in
// the way.
//
// A service figure such as "certificates issued per second" means little on its
// own: it moves with the CPU, the Go version and the crypto library. Every load
// program under bench/ therefore calls Measure in the same run, on the same
// machine, and prints its throughput also as a ratio to the raw rate of the
// operation that bounds it (Rates.Ratio): issuance, OCSP signing and TSA tokens
// against SM2 signing, verification services against SM2 verification. A ratio
// near 1 says the service adds little to the signature it must make; a falling
// ratio between commits is a regression even when the machine changed.
//
// Header prints the facts ACCEPTANCE.md §3 requires at the top of every report
// (build, machine, Go version, date), so that numbers are never shown without
// them.
//
// The same four operations are also go test benchmarks:
//
//	go test -run '^$' -bench . ./bench/ref
package ref
