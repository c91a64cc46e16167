package cms

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/*.der, the fuzz seeds")

// TestSeeds writes the fuzz seed corpus with -update-seeds, and otherwise
// checks that every seed still parses (so the seeds stay meaningful).
func TestSeeds(t *testing.T) {
	if *updateSeeds {
		ps := pki(t)
		content := []byte("seed content")
		write := func(name string, der []byte, err error) {
			if err != nil {
				t.Fatal(name, err)
			}
			if err := os.WriteFile(filepath.Join("testdata", name), der, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		sm, ec, rs := ps["sm2"], ps["p256"], ps["rsa"]
		der, err := Sign(content, []*Signer{{Certificate: sm.cert, Key: sm.key, SigningTime: time.Now()}}, &Options{Family: GMT0010})
		write("signed-sm2-gm.der", der, err)
		der, err = Sign(content, []*Signer{{Certificate: ec.cert, Key: ec.key, UseSKI: true}}, &Options{Detached: true})
		write("signed-p256-detached.der", der, err)
		sd, err := New(content, []*Signer{{Certificate: sm.cert, Key: sm.key}, {Certificate: rs.cert, Key: rs.key}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := CounterSign(sd.Signers[0], &Signer{Certificate: ec.cert, Key: ec.key}, RFC5652); err != nil {
			t.Fatal(err)
		}
		sd.AddOCSP([]byte{0x30, 0x03, 0x0a, 0x01, 0x00})
		sd.AddCRL([]byte{0x30, 0x00})
		der, err = sd.Marshal()
		write("signed-multi-counter.der", der, err)
		der, err = Encrypt(content, []*smx509.Certificate{sm.cert, ec.cert, rs.cert}, nil)
		write("enveloped-rfc.der", der, err)
		der, err = Encrypt(content, []*smx509.Certificate{sm.cert}, &EnvelopeOptions{Family: GMT0010})
		write("enveloped-gm.der", der, err)
		der, err = Seal(content, sm.cert, sm.key, nil, []*smx509.Certificate{sm.cert})
		write("sealed-gm.der", der, err)
	}
	for _, s := range seeds(t) {
		name, der := s[0], []byte(s[1])
		switch {
		case strings.HasPrefix(name, "signed"):
			if _, err := Parse(der, nil); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case strings.HasPrefix(name, "enveloped"):
			if _, err := ParseEnvelope(der, nil); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

func seeds(t testing.TB) [][2]string {
	files, _ := filepath.Glob("testdata/*.der")
	if len(files) == 0 {
		t.Fatal("no fuzz seeds in testdata (go test -run TestSeeds -update-seeds)")
	}
	var out [][2]string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, [2]string{filepath.Base(f), string(b)})
	}
	return out
}

// FuzzParse: the SignedData parser never panics, and what it accepts
// re-encodes to the same bytes and verifies without panicking.
func FuzzParse(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add([]byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		sd, err := Parse(der, nil)
		if err != nil {
			return
		}
		re, err := sd.Marshal()
		if err == nil && string(re) != string(der) && len(sd.Signers) > 0 {
			// Re-encoding sorts nothing it did not build, so a DER input
			// comes back as it was, except unsigned attribute sets, which
			// are re-sorted (DER SET OF order).
			if _, perr := Parse(re, nil); perr != nil {
				t.Fatalf("re-encoding does not parse: %v", perr)
			}
		}
		for i := range sd.Signers {
			_, _ = sd.Verify(i, VerifyOptions{Content: []byte("x")})
			for j := range sd.Signers[i].CounterSigners {
				_, _ = sd.VerifyCounterSignature(sd.Signers[i], j, VerifyOptions{})
			}
			_, _ = sd.ArchiveImprint(i, SM3, []byte("x"))
		}
	})
}

// FuzzParseEnvelope: the EnvelopedData parser never panics; decryption
// of what it accepts fails cleanly.
func FuzzParseEnvelope(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add([]byte(s[1]))
	}
	ps := pki(f)
	f.Fuzz(func(t *testing.T, der []byte) {
		env, err := ParseEnvelope(der, nil)
		if err != nil {
			return
		}
		for _, alg := range []string{"sm2", "p256"} {
			_, _ = env.Decrypt(ps[alg].cert, ps[alg].key)
		}
	})
}

// FuzzOpen: SignedAndEnvelopedData input goes through the strict
// ContentInfo check before gmsm's parser; nothing panics.
func FuzzOpen(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add([]byte(s[1]))
	}
	ps := pki(f)
	f.Fuzz(func(t *testing.T, der []byte) {
		_, _, _ = Open(der, ps["sm2"].cert, ps["sm2"].key, nil)
	})
}
