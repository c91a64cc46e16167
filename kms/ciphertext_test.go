package kms

import (
	"bytes"
	"testing"
)

func TestHeader(t *testing.T) {
	for _, h := range []Header{{"a", 1, SM4GCM}, {"payroll.v2_x-y", 1 << 30, AES256GCM}} {
		ct := append(h.marshal(), make([]byte, nonceLen+tagLen)...)
		got, n, err := ParseHeader(ct)
		if err != nil || got != h || n != headerMin+len(h.Name) {
			t.Errorf("%+v: got %+v, %d, %v", h, got, n, err)
		}
	}
	good := append(Header{"k", 1, SM4GCM}.marshal(), make([]byte, nonceLen+tagLen)...)
	for name, b := range map[string][]byte{
		"empty": nil, "magic": append([]byte("GTX"), good[3:]...), "format": func() []byte { c := bytes.Clone(good); c[3] = 2; return c }(),
		"algorithm": func() []byte { c := bytes.Clone(good); c[4] = 9; return c }(), "version 0": func() []byte { c := bytes.Clone(good); c[8] = 0; return c }(),
		"name length": func() []byte { c := bytes.Clone(good); c[9] = 200; return c }(), "short": good[:len(good)-1],
	} {
		if _, _, err := ParseHeader(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add(append(Header{"payroll", 3, SM4GCM}.marshal(), make([]byte, 40)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseHeader(b)
		if err != nil {
			return
		}
		if n > len(b) || !bytes.Equal(h.marshal(), b[:n]) {
			t.Fatalf("header %+v of %d bytes does not re-encode to the input", h, n)
		}
	})
}
