package soft

import (
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emmansun/gmsm/sm3"
)

// Shamir's secret sharing (Shamir, "How to share a secret", CACM 1979) over
// GF(2^8) with the AES polynomial x^8+x^4+x^3+x+1, byte by byte: each secret
// byte is the constant term of its own random polynomial of degree m-1, and
// share i holds the values of all polynomials at x=i (1..n). Any m shares
// give the constant terms back by Lagrange interpolation at 0; m-1 shares are
// consistent with every possible secret. Field arithmetic is branch-free and
// table-free so that timing does not depend on share bytes.

// gfMul multiplies in GF(2^8) modulo 0x11b without secret-dependent branches
// or table lookups.
func gfMul(a, b byte) byte {
	var p byte
	for range 8 {
		p ^= -(b & 1) & a
		a = a<<1 ^ 0x1b&-(a>>7)
		b >>= 1
	}
	return p
}

// gfInv returns a^-1 = a^254 (Fermat), and 0 for 0.
func gfInv(a byte) byte {
	// 254 = 0b11111110: square and multiply.
	r := byte(1)
	x := a
	for range 7 {
		x = gfMul(x, x) // a^2, a^4, ... a^128
		r = gfMul(r, x)
	}
	return r
}

// split returns n shares of secret; share i (0-based) is for x = i+1.
func split(rand io.Reader, secret []byte, n, m int) ([][]byte, error) {
	if m < 2 || m > n || n > 255 {
		return nil, fmt.Errorf("hsm/soft: shamir needs 2 <= threshold <= shares <= 255, got %d of %d", m, n)
	}
	coef := make([]byte, m-1)
	defer clear(coef)
	shares := make([][]byte, n)
	for i := range shares {
		shares[i] = make([]byte, len(secret))
	}
	for j, s := range secret {
		if _, err := io.ReadFull(rand, coef); err != nil {
			return nil, fmt.Errorf("hsm/soft: shamir coefficients: %w", err)
		}
		for i := range n {
			x := byte(i + 1)
			// Horner: ((c_{m-1} x + c_{m-2}) x + ... ) x + s
			var y byte
			for k := m - 2; k >= 0; k-- {
				y = gfMul(y, x) ^ coef[k]
			}
			shares[i][j] = gfMul(y, x) ^ s
		}
	}
	return shares, nil
}

// combine interpolates at 0 from shares ys taken at distinct non-zero xs.
func combine(xs []byte, ys [][]byte) ([]byte, error) {
	if len(xs) != len(ys) || len(xs) == 0 {
		return nil, errors.New("hsm/soft: shamir: no shares")
	}
	size := len(ys[0])
	for i, x := range xs {
		if x == 0 || len(ys[i]) != size {
			return nil, errors.New("hsm/soft: shamir: malformed share")
		}
		for _, x2 := range xs[:i] {
			if x == x2 {
				return nil, fmt.Errorf("%w: share number %d given twice", ErrBadShare, x)
			}
		}
	}
	secret := make([]byte, size)
	for i, xi := range xs {
		// Lagrange basis at 0: l_i(0) = prod_{j != i} x_j / (x_j - x_i);
		// subtraction is XOR in GF(2^8).
		l := byte(1)
		for j, xj := range xs {
			if j != i {
				l = gfMul(l, gfMul(xj, gfInv(xj^xi)))
			}
		}
		for k := range secret {
			secret[k] ^= gfMul(l, ys[i][k])
		}
	}
	return secret, nil
}

// Share text format. A share is typed or pasted by a custodian, so it is
// plain base32 (RFC 4648 alphabet, case-insensitive, no padding) in groups of
// five after the prefix "GTS1", and carries a 4-byte SM3 checksum so that a
// mistyped share is refused before it can produce a wrong master key:
//
//	version(1)=1 | share set(4) | threshold(1) | shares(1) | x(1) | y(32) | SM3(tag|...)[:4]
const (
	sharePrefix  = "GTS1"
	shareVersion = 1
	shareSetLen  = 4
	shareHdrLen  = 1 + shareSetLen + 3
	shareSumLen  = 4
	shareSumTag  = "govtrust/hsm/soft/v1 share"
)

var shareEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// share is one decoded master-key share.
type share struct {
	set       []byte
	threshold int
	shares    int
	x         byte
	y         []byte
}

func shareChecksum(b []byte) []byte {
	h := sm3.New()
	h.Write([]byte(shareSumTag))
	h.Write(b)
	return h.Sum(nil)[:shareSumLen]
}

// encodeShare formats one share for a custodian.
func encodeShare(s share) string {
	b := make([]byte, 0, shareHdrLen+len(s.y)+shareSumLen)
	b = append(b, shareVersion)
	b = append(b, s.set...)
	b = append(b, byte(s.threshold), byte(s.shares), s.x)
	b = append(b, s.y...)
	b = append(b, shareChecksum(b)...)
	enc := shareEncoding.EncodeToString(b)
	clear(b)
	var out strings.Builder
	out.WriteString(sharePrefix)
	for i := 0; i < len(enc); i += 5 {
		out.WriteByte('-')
		out.WriteString(enc[i:min(i+5, len(enc))])
	}
	return out.String()
}

// decodeShare parses a share typed by a custodian. Errors never quote the
// share text.
func decodeShare(text string) (share, error) {
	t := strings.Map(func(r rune) rune {
		switch r {
		case '-', ' ', '\t', '\n', '\r':
			return -1
		}
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, text)
	if !strings.HasPrefix(t, sharePrefix) {
		return share{}, fmt.Errorf("%w: does not start with %s", ErrBadShare, sharePrefix)
	}
	b, err := shareEncoding.DecodeString(t[len(sharePrefix):])
	if err != nil {
		return share{}, fmt.Errorf("%w: not base32 (mistyped character?)", ErrBadShare)
	}
	defer clear(b)
	// The decoder ignores the unused low bits of the last character; a
	// non-canonical last character is a typo too.
	if shareEncoding.EncodeToString(b) != t[len(sharePrefix):] {
		return share{}, fmt.Errorf("%w: last character mistyped", ErrBadShare)
	}
	if len(b) != shareHdrLen+masterKeyLen+shareSumLen {
		return share{}, fmt.Errorf("%w: wrong length (missing or extra characters?)", ErrBadShare)
	}
	body, sum := b[:len(b)-shareSumLen], b[len(b)-shareSumLen:]
	if string(shareChecksum(body)) != string(sum) {
		return share{}, fmt.Errorf("%w: checksum mismatch (mistyped?)", ErrBadShare)
	}
	if body[0] != shareVersion {
		return share{}, fmt.Errorf("%w: unknown share version %d", ErrBadShare, body[0])
	}
	s := share{
		set:       append([]byte(nil), body[1:1+shareSetLen]...),
		threshold: int(body[1+shareSetLen]),
		shares:    int(body[2+shareSetLen]),
		x:         body[3+shareSetLen],
		y:         append([]byte(nil), body[shareHdrLen:]...),
	}
	if s.threshold < 2 || s.threshold > s.shares || s.x == 0 || int(s.x) > s.shares {
		return share{}, fmt.Errorf("%w: inconsistent header", ErrBadShare)
	}
	return s, nil
}
