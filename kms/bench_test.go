package kms

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/govtrust/govtrust/internal/authz/policy"
)

// BenchmarkHTTPS measures encrypt and decrypt over the HTTPS API with raw
// bodies (issue #8: operations per second for 1 KB and 1 MB), SQLite,
// software keystore, parallel clients on keep-alive connections.
func BenchmarkHTTPS(b *testing.B) {
	tn := startNode(b, nil)
	tn.account("app1", "org1", policy.RoleApplication)
	tn.must("POST", "/api/v1/kms/keys", "secadmin", map[string]any{"name": "bench", "owner": tn.ids["app1"]}, nil)
	url := "https://" + tn.n.Addresses().HTTPS + "/api/v1/kms/keys/bench/"
	call := func(op string, body []byte) ([]byte, error) {
		req, _ := http.NewRequest("POST", url+op, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tn.tokens["app1"])
		req.Header.Set("Content-Type", OctetStream)
		resp, err := tn.c.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: %d %s", op, resp.StatusCode, out)
		}
		return out, err
	}
	for _, size := range []int{1 << 10, 1 << 20} {
		plain := bytes.Repeat([]byte{0x5a}, size)
		if size == 1<<20 {
			plain = plain[:1_000_000] // under http.max_body_bytes with the header
		}
		ct, err := call("encrypt", plain)
		if err != nil {
			b.Fatal(err)
		}
		for _, op := range []struct {
			name string
			body []byte
		}{{"encrypt", plain}, {"decrypt", ct}} {
			b.Run(fmt.Sprintf("%s-%dKB", op.name, size>>10), func(b *testing.B) {
				b.SetBytes(int64(len(op.body)))
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := call(op.name, op.body); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}

// BenchmarkRoundTrip100MB encrypts and decrypts 100 MB through the API
// (ACCEPTANCE.md D-01), with http.max_body_bytes raised for it.
func BenchmarkRoundTrip100MB(b *testing.B) {
	tn := startNode(b, nil, "GOVTRUST_HTTP_MAX_BODY_BYTES=120000000", "GOVTRUST_HTTP_READ_TIMEOUT=5m", "GOVTRUST_HTTP_WRITE_TIMEOUT=5m")
	tn.account("app1", "org1", policy.RoleApplication)
	tn.must("POST", "/api/v1/kms/keys", "secadmin", map[string]any{"name": "big", "owner": tn.ids["app1"]}, nil)
	plain := bytes.Repeat([]byte("0123456789abcdef"), 100_000_000/16)
	hdr := map[string]string{"Content-Type": OctetStream}
	b.SetBytes(int64(len(plain)))
	for b.Loop() {
		st, ct, _ := tn.do("POST", "/api/v1/kms/keys/big/encrypt", "app1", plain, hdr)
		if st != http.StatusOK {
			b.Fatalf("encrypt: %d", st)
		}
		st, got, _ := tn.do("POST", "/api/v1/kms/keys/big/decrypt", "app1", ct, hdr)
		if st != http.StatusOK || !bytes.Equal(got, plain) {
			b.Fatalf("decrypt: %d", st)
		}
		tn.responses = nil
	}
}
