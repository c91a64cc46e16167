//go:build !cgo

package pkcs11

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/govtrust/govtrust/hsm"
)

func TestNoCgo(t *testing.T) {
	km, err := New(context.Background(), Config{Module: "/usr/lib/softhsm/libsofthsm2.so", Token: "t"})
	if km != nil || !errors.Is(err, hsm.ErrUnavailable) || !strings.Contains(err.Error(), "built without cgo") {
		t.Fatalf("New = %v, %v", km, err)
	}
}
