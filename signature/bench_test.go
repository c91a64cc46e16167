package signature

import (
	"bytes"
	"testing"

	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/signature/cms"
)

// BenchmarkAPI measures signing and verification over HTTPS on one node
// (SQLite, software keystore, every signature audited, every verification
// asking OCSP for the signer and its CA): raw signatures, CMS over 1 KB and
// hash-only CMS, for SM2 and ECDSA P-256. README figures are the CMS rates
// as ratios to the raw ones.
//
//	go test -run XXX -bench API -benchtime 3s ./signature/
func BenchmarkAPI(b *testing.B) {
	tn := startNode(b)
	appID, tok := tn.account("bench-app", authz.KindApplication, "application")
	data := bytes.Repeat([]byte{'x'}, 1024)
	for _, alg := range []string{"sm2", "ecdsa-p256"} {
		k := tn.newKey(appID, alg)
		h := cms.SM3
		if alg != "sm2" {
			h = cms.SHA256
		}
		reqs := map[string]SignRequest{
			"raw-1KB":       {Mode: "raw", Data: data},
			"cms-1KB":       {Data: data},
			"cms-hash-only": {Digest: h.Sum(data), Hash: h.Name},
		}
		for _, name := range []string{"raw-1KB", "cms-1KB", "cms-hash-only"} {
			req := reqs[name]
			b.Run(alg+"/sign/"+name, func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						tn.sign(k.ID, tok, req)
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
			sig := tn.sign(k.ID, tok, req)
			vreq := VerifyRequest{Signature: sig}
			switch name {
			case "raw-1KB":
				vreq.Certificate, vreq.Data = k.Certificate, data
			case "cms-hash-only":
				vreq.Digest, vreq.Hash = h.Sum(data), h.Name
			}
			b.Run(alg+"/verify/"+name, func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if r := tn.verify(tok, vreq); !r.Valid {
							b.Fatalf("invalid: %v", failed(r))
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}
