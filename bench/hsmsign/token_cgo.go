//go:build cgo

package main

import (
	"errors"
	"fmt"

	p11 "github.com/miekg/pkcs11"
)

// cgoEnabled reports whether PKCS#11 modules can be loaded.
const cgoEnabled = true

// initToken initialises the token of the module's first slot with
// C_InitToken and C_InitPIN, and finalises the module again.
func initToken(module string) (err error) {
	p := p11.New(module)
	if p == nil {
		return fmt.Errorf("cannot load PKCS#11 module %s", module)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		return fmt.Errorf("C_Initialize: %w", err)
	}
	defer func() { err = errors.Join(err, p.Finalize()) }()
	slots, err := p.GetSlotList(false)
	if err != nil {
		return fmt.Errorf("C_GetSlotList: %w", err)
	}
	if len(slots) == 0 {
		return errors.New("module has no slot")
	}
	if err := p.InitToken(slots[0], tokenSOPIN, tokenLabel); err != nil {
		return fmt.Errorf("C_InitToken: %w", err)
	}
	s, err := p.OpenSession(slots[0], p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("C_OpenSession: %w", err)
	}
	defer p.CloseSession(s)
	if err := p.Login(s, p11.CKU_SO, tokenSOPIN); err != nil {
		return fmt.Errorf("C_Login as SO: %w", err)
	}
	if err := p.InitPIN(s, tokenPIN); err != nil {
		return fmt.Errorf("C_InitPIN: %w", err)
	}
	return p.Logout(s)
}
