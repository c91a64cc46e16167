package seal

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm3"

	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/signature/seal/agent"
	"github.com/govtrust/govtrust/signature/ses"
)

// rawCall sends body as is to the HTTPS API and returns the status and the
// answer's body (a problem's detail is in it).
func (tn *testNode) rawCall(c *http.Client, path, token, contentType string, body io.Reader, length int64) (int, string, error) {
	req, err := http.NewRequest("POST", "https://"+tn.n.Addresses().HTTPS+path, body)
	if err != nil {
		return 0, "", err
	}
	req.ContentLength = length
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b), nil
}

// pattern is a generated document of n bytes, read as a stream so that
// neither the test nor anything else holds it: every 64 KiB block differs.
type pattern struct {
	n, off int64
	block  [64 << 10]byte
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	i := p.off % int64(len(p.block))
	if i == 0 {
		seed := uint64(p.off/int64(len(p.block)))*0x9e3779b97f4a7c15 + 1
		for j := range p.block {
			seed ^= seed << 13
			seed ^= seed >> 7
			seed ^= seed << 17
			p.block[j] = byte(seed)
		}
	}
	n := copy(b, p.block[i:])
	if rem := p.n - p.off; int64(n) > rem {
		n = int(rem)
	}
	p.off += int64(n)
	return n, nil
}

// heapBytes is the live heap (runtime/metrics), the memory a request's
// body would occupy if the server held it.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// peakRSS is VmHWM of this process in bytes (Linux), after resetPeakRSS.
func peakRSS(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// resetPeakRSS resets VmHWM to the current RSS (proc(5), clear_refs "5").
func resetPeakRSS(t *testing.T) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("reset the peak RSS: %v", err)
	}
}

// TestInputLimits is ACCEPTANCE.md H-05: a 0-byte document, a 2 GiB
// document sealed in hash-only mode, unsupported formats, and 100
// concurrent 50 MB uploads, with the server's memory bounded.
func TestInputLimits(t *testing.T) {
	tn := startNode(t)
	tok := newToken(t)
	_, adminTok := tn.account("seal-admin-1", policy.RoleSealAdmin)
	_, admin2Tok := tn.account("seal-admin-2", policy.RoleSealAdmin)
	_, zhangTok := tn.account("zhang", policy.RoleOfficial)
	cert := tn.issue(tok.signer, "张三")
	now := time.Now().UTC()
	rec := tn.makeSeal(adminTok, admin2Tok, ApplyRequest{Name: "福州市数据管理局", Kind: "contract", Generate: true, ValidFrom: now.Add(-time.Hour),
		ValidTo: now.AddDate(1, 0, 0), Holders: []Holder{{Account: "zhang", Certificate: pemOf(cert)}}})
	ag := startAgent(t, tok.signer, cert, new([]agent.Shown))
	prepare := "/api/v1/seals/" + rec.ID + "/prepare"
	hc := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 100}}
	jsonBody := func(v any) (io.Reader, int64) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.NewReader(b), int64(len(b))
	}

	t.Run("0-byte document", func(t *testing.T) {
		for _, format := range []string{FormatSES, FormatOFD, FormatPDF} {
			// Sent as "document":"" by hand, and left out as a JSON
			// encoder with omitempty does.
			explicit := `{"format":"` + format + `","document":"","name":"empty","certificate":` + strconv.Quote(pemOf(cert)) + `}`
			omitted, _ := json.Marshal(PrepareRequest{Format: format, Document: []byte{}, Name: "empty", Certificate: pemOf(cert)})
			for _, body := range []string{explicit, string(omitted)} {
				st, ans, err := tn.rawCall(hc, prepare, zhangTok, "application/json", strings.NewReader(body), int64(len(body)))
				if err != nil || st != http.StatusBadRequest || !strings.Contains(ans, "0-byte document cannot be sealed") {
					t.Errorf("%s %s: %d %v %s, want 400 naming the 0-byte document", format, body[:40], st, err, ans)
				}
			}
		}
		body, n := jsonBody(VerifyRequest{Format: FormatSES, Document: []byte{}, Signature: []byte{1}})
		if st, ans, err := tn.rawCall(hc, "/api/v1/seals/verify", zhangTok, "application/json", body, n); err != nil || st != http.StatusBadRequest {
			t.Errorf("verify of a 0-byte document: %d %v %s, want 400", st, err, ans)
		}
	})

	t.Run("2 GiB document in hash-only mode", func(t *testing.T) {
		// The document is generated and hashed as a stream: only its SM3
		// reaches the server (and no disk holds it).
		const size = 2 << 30
		h := sm3.New()
		start := time.Now()
		if n, err := io.Copy(h, &pattern{n: size}); err != nil || n != size {
			t.Fatalf("hash: %d %v", n, err)
		}
		t.Logf("SM3 of %d bytes streamed in %s", int64(size), time.Since(start).Round(time.Millisecond))
		digest := h.Sum(nil)
		out, st := tn.sealVia(ag, zhangTok, rec.ID, PrepareRequest{Format: FormatSES, Digest: digest, Name: "archive-2GiB.iso", Certificate: pemOf(cert)})
		if st != http.StatusOK {
			t.Fatalf("hash-only sealing: %d", st)
		}
		sig, err := ses.ParseSignature(out.Document)
		if err != nil || !bytes.Equal(sig.TBS.DataHash, digest) {
			t.Fatalf("the .ses does not seal the digest: %v", err)
		}
		mustValid(t, tn.verify(zhangTok, VerifyRequest{Format: FormatSES, Digest: digest, Signature: out.Document}))
		// A digest that is not an SM3 is refused, as is one for an OFD.
		for _, bad := range []PrepareRequest{
			{Format: FormatSES, Digest: digest[:20], Name: "x", Certificate: pemOf(cert)},
			{Format: FormatOFD, Digest: digest, Name: "x.ofd", Certificate: pemOf(cert)},
		} {
			body, n := jsonBody(bad)
			if st, ans, err := tn.rawCall(hc, prepare, zhangTok, "application/json", body, n); err != nil || st != http.StatusBadRequest || !strings.Contains(ans, "digest") {
				t.Errorf("%s digest of %d bytes: %d %v %s, want 400", bad.Format, len(bad.Digest), st, err, ans)
			}
		}
	})

	t.Run("unsupported format", func(t *testing.T) {
		doc := []byte("plain text, not an OFD nor a PDF")
		for _, tt := range []struct {
			name, ct string
			req      PrepareRequest
			want     int
			detail   string
		}{
			{"unknown format", "application/json", PrepareRequest{Format: "docx", Document: doc, Name: "a.docx", Certificate: pemOf(cert)}, 400, `docx\" is not ses, ofd or pdf`},
			{"text as OFD", "application/json", PrepareRequest{Format: FormatOFD, Document: doc, Name: "a.ofd", Certificate: pemOf(cert)}, 400, "seal: invalid request"},
			{"text as PDF", "application/json", PrepareRequest{Format: FormatPDF, Document: doc, Name: "a.pdf", Certificate: pemOf(cert)}, 400, "seal: invalid request"},
			{"multipart upload", "multipart/form-data; boundary=x", PrepareRequest{Format: FormatSES, Document: doc, Name: "a", Certificate: pemOf(cert)}, 415, "application/json"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				body, n := jsonBody(tt.req)
				st, ans, err := tn.rawCall(hc, prepare, zhangTok, tt.ct, body, n)
				if err != nil || st != tt.want || !strings.Contains(ans, tt.detail) {
					t.Fatalf("%d %v %s, want %d with %q", st, err, ans, tt.want, tt.detail)
				}
				t.Logf("%d %s", st, ans)
			})
		}
	})

	t.Run("100 concurrent 50 MB uploads", func(t *testing.T) {
		// Each request is a prepare of a 50 MB document (base64 in JSON,
		// about 67 MB on the wire), streamed from a generator. The API
		// reads at most http.max_body_bytes (1 MiB by default) of each
		// body and answers 413: at most 100 × 1 MiB of JSON buffers are
		// live at once, never 100 × 50 MB.
		const clients, docSize = 100, 50 << 20
		maxBody := tn.n.Env().Config.HTTP.MaxBodyBytes
		prefix := `{"format":"ses","name":"big.bin","certificate":` + strconv.Quote(pemOf(cert)) + `,"document":"`
		b64 := int64((docSize + 2) / 3 * 4)
		length := int64(len(prefix)) + b64 + 2
		runtime.GC()
		base := heapBytes()
		resetPeakRSS(t)
		rssBefore := peakRSS(t)
		var peak uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for {
				if h := heapBytes(); h > peak {
					peak = h
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		type result struct {
			status int
			answer string
			err    error
		}
		results := make([]result, clients)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Go(func() {
				body := io.MultiReader(strings.NewReader(prefix), io.LimitReader(repeatByte('A'), b64), strings.NewReader(`"}`))
				st, ans, err := tn.rawCall(hc, prepare, zhangTok, "application/json", body, length)
				results[i] = result{st, ans, err}
			})
		}
		wg.Wait()
		close(stop)
		<-sampled
		rssPeak := peakRSS(t)
		counts := map[string]int{}
		for _, r := range results {
			switch {
			case r.err != nil && (strings.Contains(r.err.Error(), "write: connection reset") || strings.Contains(r.err.Error(), "write: broken pipe") || strings.Contains(r.err.Error(), "read: connection reset")):
				// The server closed the connection after its 413 while
				// the client was still sending the rest of the body (the
				// reset can also reach the client's read of the answer
				// first).
				counts["connection closed while sending"]++
			case r.status == http.StatusRequestEntityTooLarge && strings.Contains(r.answer, "too-large"):
				counts["413"]++
			default:
				t.Errorf("upload answered %d %s, want 413", r.status, r.answer)
			}
		}
		growth := int64(peak) - int64(base)
		bound := int64(clients)*2*maxBody + 64<<20
		t.Logf("%v; live heap %d MiB before, peak %d MiB (+%d MiB); peak RSS %d MiB → %d MiB; bound %d MiB (2 × clients × max_body_bytes + 64 MiB)",
			counts, base>>20, peak>>20, growth>>20, rssBefore>>20, rssPeak>>20, bound>>20)
		if counts["413"] == 0 {
			t.Error("no upload was answered 413")
		}
		if growth > bound {
			t.Errorf("live heap grew by %d MiB, above the bound of %d MiB", growth>>20, bound>>20)
		}
		if int64(rssPeak)-int64(rssBefore) > bound {
			t.Errorf("peak RSS grew by %d MiB, above the bound of %d MiB", (int64(rssPeak)-int64(rssBefore))>>20, bound>>20)
		}
		// The node still serves after the flood.
		body, n := jsonBody(PrepareRequest{Format: FormatSES, Document: []byte("after"), Name: "after.txt", Certificate: pemOf(cert)})
		if st, ans, err := tn.rawCall(hc, prepare, zhangTok, "application/json", body, n); err != nil || st != http.StatusOK {
			t.Fatalf("prepare after the uploads: %d %v %s", st, err, ans)
		}
	})
}

// repeatByte is an endless reader of one byte.
type repeatByte byte

func (r repeatByte) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(r)
	}
	return len(b), nil
}
