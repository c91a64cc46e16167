package soft

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

// gfMulRef is the textbook shift-and-add multiplication with branches, as
// in FIPS 197 §4.2.1, to check the branch-free one.
func gfMulRef(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		hi := a&0x80 != 0
		a <<= 1
		if hi {
			a ^= 0x1b
		}
		b >>= 1
	}
	return p
}

func TestGF256(t *testing.T) {
	// FIPS 197 §4.2: {57} • {83} = {c1}, {57} • {13} = {fe}.
	if got := gfMul(0x57, 0x83); got != 0xc1 {
		t.Errorf("57*83 = %02x, want c1", got)
	}
	if got := gfMul(0x57, 0x13); got != 0xfe {
		t.Errorf("57*13 = %02x, want fe", got)
	}
	for a := range 256 {
		for b := range 256 {
			if got, want := gfMul(byte(a), byte(b)), gfMulRef(byte(a), byte(b)); got != want {
				t.Fatalf("gfMul(%02x,%02x) = %02x, want %02x", a, b, got, want)
			}
		}
		if a != 0 {
			if p := gfMul(byte(a), gfInv(byte(a))); p != 1 {
				t.Fatalf("%02x * inv = %02x, want 01", a, p)
			}
		}
	}
	if gfInv(0) != 0 {
		t.Error("inv(0) != 0")
	}
}

// subsets calls f with every k-subset of 0..n-1.
func subsets(n, k int, f func([]int)) {
	var rec func(start int, cur []int)
	rec = func(start int, cur []int) {
		if len(cur) == k {
			f(append([]int(nil), cur...))
			return
		}
		for i := start; i < n; i++ {
			rec(i+1, append(cur, i))
		}
	}
	rec(0, nil)
}

func TestShamirSubsets(t *testing.T) {
	for _, tc := range []struct{ n, m int }{{5, 3}, {5, 2}, {5, 5}, {3, 2}, {7, 4}, {255, 2}} {
		t.Run("", func(t *testing.T) {
			secret := make([]byte, masterKeyLen)
			rand.Read(secret)
			ys, err := split(rand.Reader, secret, tc.n, tc.m)
			if err != nil {
				t.Fatal(err)
			}
			try := func(idx []int) []byte {
				xs := make([]byte, len(idx))
				sel := make([][]byte, len(idx))
				for i, j := range idx {
					xs[i], sel[i] = byte(j+1), ys[j]
				}
				got, err := combine(xs, sel)
				if err != nil {
					t.Fatal(err)
				}
				return got
			}
			if tc.n > 10 { // all pairs of 255 is 32385 subsets: sample
				for range 200 {
					var b [2]byte
					rand.Read(b[:])
					i, j := int(b[0])%tc.n, int(b[1])%tc.n
					if i != j && !bytes.Equal(try([]int{i, j}), secret) {
						t.Fatalf("shares %d,%d do not reconstruct", i+1, j+1)
					}
				}
				return
			}
			count := 0
			for k := tc.m; k <= tc.n; k++ { // m or more shares reconstruct
				subsets(tc.n, k, func(idx []int) {
					count++
					if !bytes.Equal(try(idx), secret) {
						t.Errorf("%d of %d: shares %v do not reconstruct the secret", tc.m, tc.n, idx)
					}
				})
			}
			subsets(tc.n, tc.m-1, func(idx []int) { // m-1 do not
				if bytes.Equal(try(idx), secret) {
					t.Errorf("%d of %d: only %d shares %v reconstruct the secret", tc.m, tc.n, tc.m-1, idx)
				}
			})
			if tc.n == 5 && tc.m == 3 && count != 10+5+1 {
				t.Errorf("checked %d subsets, want 16", count)
			}
		})
	}
}

// TestShamirHiding checks the hiding property on one byte: with m=2, a single
// share takes each of the 256 values for some polynomial, whatever the
// secret, so one share says nothing. Exhaustive over the coefficient.
func TestShamirHiding(t *testing.T) {
	for _, s := range []byte{0x00, 0x5a, 0xff} {
		seen := map[byte]bool{}
		for c := range 256 {
			ys, err := split(bytes.NewReader([]byte{byte(c)}), []byte{s}, 2, 2)
			if err != nil {
				t.Fatal(err)
			}
			seen[ys[0][0]] = true
		}
		if len(seen) != 256 {
			t.Errorf("secret %02x: share 1 takes %d values, want 256", s, len(seen))
		}
	}
}

func TestShamirParams(t *testing.T) {
	for _, tc := range []struct{ n, m int }{{5, 1}, {2, 3}, {256, 3}, {0, 0}} {
		if _, err := split(rand.Reader, []byte{1}, tc.n, tc.m); err == nil {
			t.Errorf("split n=%d m=%d: no error", tc.n, tc.m)
		}
	}
	if _, err := combine([]byte{1, 1}, [][]byte{{1}, {2}}); !errors.Is(err, ErrBadShare) {
		t.Errorf("duplicate x: %v", err)
	}
}

func testShare() share {
	y := make([]byte, masterKeyLen)
	rand.Read(y)
	return share{set: []byte{1, 2, 3, 4}, threshold: 3, shares: 5, x: 2, y: y}
}

func TestShareEncoding(t *testing.T) {
	s := testShare()
	text := encodeShare(s)
	if !strings.HasPrefix(text, "GTS1-") {
		t.Fatalf("share %q lacks prefix", text)
	}
	for _, variant := range []string{text, strings.ToLower(text), strings.ReplaceAll(text, "-", ""), " " + strings.ReplaceAll(text, "-", " ") + "\n"} {
		got, err := decodeShare(variant)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !bytes.Equal(got.set, s.set) || got.threshold != 3 || got.shares != 5 || got.x != 2 || !bytes.Equal(got.y, s.y) {
			t.Fatalf("decoded %+v, want %+v", got, s)
		}
	}
}

// TestShareMistyped changes every character of a share to every other
// base32 character, and swaps neighbours: each variant must be refused with
// ErrBadShare, and the error must not quote the share.
func TestShareMistyped(t *testing.T) {
	text := encodeShare(testShare())
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	check := func(bad string) {
		t.Helper()
		_, err := decodeShare(bad)
		if !errors.Is(err, ErrBadShare) {
			t.Fatalf("mistyped share accepted (err %v)", err)
		}
		if strings.Contains(err.Error(), strings.ReplaceAll(bad[5:], "-", "")[:10]) {
			t.Fatalf("error quotes the share: %v", err)
		}
	}
	for i := len("GTS1-"); i < len(text); i++ {
		if text[i] == '-' {
			continue
		}
		for _, c := range alphabet {
			if byte(c) != text[i] {
				check(text[:i] + string(c) + text[i+1:])
			}
		}
		if i+1 < len(text) && text[i+1] != '-' && text[i+1] != text[i] {
			check(text[:i] + string(text[i+1]) + string(text[i]) + text[i+2:])
		}
	}
	check(text[:len(text)-1])
	check(text + "A")
	check("XYZ" + text)
	check(strings.Replace(text, "A", "0", 1) + "A")
}

func FuzzDecodeShare(f *testing.F) {
	f.Add(encodeShare(testShare()))
	f.Add("GTS1-AAAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		sh, err := decodeShare(s)
		if err != nil {
			return
		}
		if len(sh.y) != masterKeyLen || sh.x == 0 || sh.threshold < 2 || sh.threshold > sh.shares {
			t.Fatalf("accepted inconsistent share %+v", sh)
		}
		if again, err := decodeShare(encodeShare(sh)); err != nil || !bytes.Equal(again.y, sh.y) {
			t.Fatalf("re-encoding does not round-trip: %v", err)
		}
	})
}
