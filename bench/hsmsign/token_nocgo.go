//go:build !cgo

package main

import "fmt"

// cgoEnabled reports whether PKCS#11 modules can be loaded: they are C
// libraries, loaded with dlopen through cgo.
const cgoEnabled = false

func initToken(string) error { return fmt.Errorf("%w: built without cgo", errNotAvailable) }
