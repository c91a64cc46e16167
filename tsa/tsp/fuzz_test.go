package tsp

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// seeds adds every testdata file with one of exts to f's corpus.
func seeds(f *testing.F, exts ...string) {
	for _, ext := range exts {
		files, _ := filepath.Glob(filepath.Join("testdata", "*"+ext))
		if len(files) == 0 {
			f.Fatalf("no testdata/*%s seeds (go test -run TestWriteSeeds -update)", ext)
		}
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
}

// FuzzParseRequest: no panic, and a request that parses re-encodes to the
// same octets (strict DER admits one encoding).
func FuzzParseRequest(f *testing.F) {
	seeds(f, ".tsq")
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			if FailureOf(err) == SystemFailure {
				t.Fatalf("parse error without a failure bit: %v", err)
			}
			return
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatalf("marshal parsed request: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip differs:\n in % x\nout % x", b, out)
		}
	})
}

// FuzzParseResponse: no panic; a parsed response re-encodes identically
// when it carries no token (a token is copied as it is).
func FuzzParseResponse(f *testing.F) {
	seeds(f, ".tsr")
	f.Add(Rejection(BadAlg, "x"))
	f.Add(Rejection(TimeNotAvailable, ""))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			return
		}
		if r.Token != nil {
			_, _ = ParseToken(r.Token)
		}
	})
}

// FuzzParseToken: no panic, and Verify of whatever parses returns an error
// rather than panicking (no trust anchors are given, so nothing verifies).
func FuzzParseToken(f *testing.F) {
	seeds(f, ".tst")
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := ParseToken(b)
		if err != nil {
			return
		}
		if tok.Info == nil {
			t.Fatal("parsed token without TSTInfo")
		}
		if _, err := tok.Verify(VerifyOptions{}); err == nil {
			t.Fatal("a token verified without trust anchors")
		}
		if _, err := ParseTSTInfo(tok.Info.Raw); err != nil {
			t.Fatalf("TSTInfo reparse: %v", err)
		}
	})
}
