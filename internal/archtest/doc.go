// Package archtest holds the repository hygiene tests of govtrust: the import
// rules of ARCHITECTURE.md §1 (layers import only downward, services never
// import each other's core, nothing imports cmd, no production package imports
// testing) and the requirement that every package has a package comment.
//
// The rules are checked against `go list -e -json ./...` of the whole module,
// so a new package is covered the moment it exists. The package has no
// non-test code; run it with
//
//	go test ./internal/archtest
//
// The allowed exceptions (the shared codec packages, the software keystore's
// use of internal/store, the test-helper packages) are listed once, at the top
// of arch_test.go, each with its reason.
package archtest
