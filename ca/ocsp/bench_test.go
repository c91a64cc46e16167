package ocsp

import (
	"testing"
	"time"
)

// BenchmarkCreateResponse signs one response on demand (the responder's
// path for nonces and cache misses); ops/s is responses per second.
func BenchmarkCreateResponse(b *testing.B) {
	for _, alg := range []string{"SM2", "ECDSA"} {
		b.Run(alg, func(b *testing.B) {
			p := pkiFor(b, alg)
			tmpl := p.baseTemplate(time.Now())
			b.ReportAllocs()
			for b.Loop() {
				if _, err := CreateResponse(p.ca, p.signer, tmpl, p.signerKey); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// BenchmarkRawSign is the raw signature the responses cost, measured in the
// same run so CreateResponse can be read as a ratio to it.
func BenchmarkRawSign(b *testing.B) {
	for _, alg := range []string{"SM2", "ECDSA"} {
		b.Run(alg, func(b *testing.B) {
			p := pkiFor(b, alg)
			a, err := chooseSigAlg(p.signerKey.Public(), 0)
			if err != nil {
				b.Fatal(err)
			}
			msg := make([]byte, 200) // about a tbsResponseData
			for b.Loop() {
				if _, err := signTBS(p.signerKey, a, msg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// BenchmarkParseRequest parses an RFC 5019 request with a nonce.
func BenchmarkParseRequest(b *testing.B) {
	p := pkiFor(b, "SM2")
	der, err := CreateRequest(p.leaf, p.ca, &RequestOptions{Hash: SM3, Nonce: []byte("0123456789abcdef")})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequest(der); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkParseResponse parses and verifies a delegated response, as a
// relying party does (two signature checks: responder certificate and
// response).
func BenchmarkParseResponse(b *testing.B) {
	for _, alg := range []string{"SM2", "ECDSA"} {
		b.Run(alg, func(b *testing.B) {
			p := pkiFor(b, alg)
			der, err := CreateResponse(p.ca, p.signer, p.baseTemplate(time.Now()), p.signerKey)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := ParseResponse(der, p.ca); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}
