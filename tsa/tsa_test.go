package tsa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/store/storetest"
	"github.com/govtrust/govtrust/internal/testenv"
	"github.com/govtrust/govtrust/tsa/client"
	"github.com/govtrust/govtrust/tsa/tsp"
)

// cmsSM2Verify is INTEROP.md "Helper 2": the SM2 signature over the signed
// attributes and the messageDigest, checked with OpenSSL alone.
const cmsSM2Verify = `#!/bin/sh
set -eu
in=$1; cert=$2; content=$3
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
openssl asn1parse -inform DER -in "$in" | sed 's/:d=/ d=/; s/hl= */hl=/; s/ l= */ l=/' > "$t/p"
line=$(grep ' d=5 ' "$t/p" | grep 'cont \[ 0 \]' | tail -1)
off=$(echo "$line" | awk '{print $1}')
hl=$(echo "$line" | awk '{sub("hl=","",$3); print $3}')
len=$(echo "$line" | awk '{sub("l=","",$4); print $4}')
dd if="$in" of="$t/sa" bs=1 skip="$off" count=$((hl + len)) status=none
printf '\061' | dd of="$t/sa" bs=1 count=1 conv=notrunc status=none
sigoff=$(grep ' d=5 ' "$t/p" | grep 'OCTET STRING' | tail -1 | awk '{print $1}')
openssl asn1parse -inform DER -in "$in" -strparse "$sigoff" -out "$t/sig" -noout
openssl pkeyutl -verify -certin -inkey "$cert" -rawin -digest sm3 \
  -pkeyopt distid:1234567812345678 -in "$t/sa" -sigfile "$t/sig"
md=$(grep ' d=8 ' "$t/p" | grep 'OCTET STRING' | tail -1 | sed 's/.*DUMP\]://' | tr 'A-F' 'a-f')
got=$(openssl dgst -sm3 -r "$content" | cut -d' ' -f1)
[ "$md" = "$got" ] && echo "messageDigest matches SM3(content)" || { echo "messageDigest MISMATCH"; exit 1; }
`

// ACCEPTANCE.md G-01: requests made by OpenSSL, tokens checked field by
// field, by the platform's verifier, and by OpenSSL (ECDSA: ts -verify;
// SM2: the detached check of INTEROP.md, OpenSSL 3.0 cannot verify SM2
// tokens with Z).
func TestTokenContentsG01(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"), "")
	dir := t.TempDir()
	data := filepath.Join(dir, "doc.txt")
	if err := os.WriteFile(data, []byte("G-01 document\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "cms-sm2-verify.sh")
	if err := os.WriteFile(script, []byte(cmsSM2Verify), 0o700); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ path, profile, md, root, issuing string }{
		{"/tsa", "sm2", "sm3", "sm2-root", "sm2-issuing"},
		{"/tsa", "sm2", "sha256", "sm2-root", "sm2-issuing"},
		{"/tsa/ecdsa", "ecdsa", "sha256", "ecdsa-root", "ecdsa-issuing"},
		{"/tsa/ecdsa", "ecdsa", "sm3", "ecdsa-root", "ecdsa-issuing"},
	}
	for _, c := range cases {
		t.Run(c.profile+"/"+c.md, func(t *testing.T) {
			tsq := filepath.Join(dir, c.profile+c.md+".tsq")
			mustRun(t, "openssl", "ts", "-query", "-data", data, "-"+c.md, "-cert", "-out", tsq)
			reqDER, _ := os.ReadFile(tsq)
			req, err := tsp.ParseRequest(reqDER)
			if err != nil {
				t.Fatal(err)
			}
			before := time.Now()
			resp, raw := tn.stamp(c.path, reqDER)
			after := time.Now()
			if resp.Status != tsp.StatusGranted {
				t.Fatalf("status %d %v %q", resp.Status, resp.Failures, resp.StatusString)
			}
			tok, err := tsp.ParseToken(resp.Token)
			if err != nil {
				t.Fatal(err)
			}
			content, _ := os.ReadFile(data)
			cert, err := tok.Verify(tsp.VerifyOptions{Roots: tn.roots(c.root), Request: req, Data: content})
			if err != nil {
				t.Fatalf("platform verifier: %v", err)
			}
			info := tok.Info
			switch {
			case info.Version != 1:
				t.Errorf("TSTInfo version %d", info.Version)
			case !info.Policy.Equal(tn.svc.PolicyOIDs()[0]):
				t.Errorf("policy %s", info.Policy)
			case !bytes.Equal(info.MessageImprint.HashedMessage, req.MessageImprint.HashedMessage):
				t.Error("imprint differs")
			case req.Nonce == nil || info.Nonce == nil || req.Nonce.Cmp(info.Nonce) != 0:
				t.Errorf("nonce %v, request %v", info.Nonce, req.Nonce)
			case info.Accuracy != time.Second || info.Ordering:
				t.Errorf("accuracy %s ordering %v", info.Accuracy, info.Ordering)
			case info.GenTime.Before(before.Add(-time.Second)) || info.GenTime.After(after.Add(time.Second)):
				t.Errorf("genTime %s outside [%s, %s] ±1 s", info.GenTime, before, after)
			case len(tok.Certificates) < 2:
				t.Errorf("certReq set but %d certificates in the token", len(tok.Certificates))
			}
			if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != smx509.ExtKeyUsageTimeStamping {
				t.Errorf("TSA EKU %v", cert.ExtKeyUsage)
			}
			tsr := filepath.Join(dir, c.profile+c.md+".tsr")
			if err := os.WriteFile(tsr, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			text := mustRun(t, "openssl", "ts", "-reply", "-in", tsr, "-text")
			for _, want := range []string{"Status: Granted", "Version: 1", "Policy OID: " + info.Policy.String(), "Accuracy: 0x01 seconds", "Nonce: 0x"} {
				if !strings.Contains(text, want) {
					t.Errorf("openssl ts -reply -text lacks %q:\n%s", want, text)
				}
			}
			// The signingCertificateV2 attribute, by OID, in OpenSSL's dump.
			tokFile := filepath.Join(dir, c.profile+c.md+".tok")
			mustRun(t, "openssl", "ts", "-reply", "-in", tsr, "-token_out", "-out", tokFile)
			if dump := mustRun(t, "openssl", "asn1parse", "-inform", "DER", "-in", tokFile); !strings.Contains(dump, "id-smime-aa-signingCertificateV2") {
				t.Errorf("no signingCertificateV2 attribute:\n%s", dump)
			}
			rootPEM, _ := tn.caPEM(c.root)
			issuingPEM, _ := tn.caPEM(c.issuing)
			tsaPEM := filepath.Join(dir, c.profile+c.md+"-tsa.pem")
			writePEM(t, tsaPEM, cert.Raw)
			if c.profile == "ecdsa" {
				out := mustRun(t, "openssl", "ts", "-verify", "-in", tsr, "-data", data, "-CAfile", rootPEM, "-untrusted", issuingPEM)
				if !strings.Contains(out, "Verification: OK") {
					t.Fatalf("openssl ts -verify: %s", out)
				}
				if out, err := run(t, "openssl", "ts", "-verify", "-in", tsr, "-data", script, "-CAfile", rootPEM, "-untrusted", issuingPEM); err == nil {
					t.Fatalf("openssl ts -verify accepted the token for other data: %s", out)
				}
				return
			}
			tst := filepath.Join(dir, c.profile+c.md+".tst")
			if err := os.WriteFile(tst, info.Raw, 0o600); err != nil {
				t.Fatal(err)
			}
			testenv.LookPath(t, "sh")
			out := mustRun(t, "sh", script, tokFile, tsaPEM, tst)
			if !strings.Contains(out, "Signature Verified Successfully") || !strings.Contains(out, "messageDigest matches") {
				t.Fatalf("SM2 detached check: %s", out)
			}
			if out, err := run(t, "sh", script, tokFile, tsaPEM, data); err == nil {
				t.Fatalf("SM2 detached check accepted other content: %s", out)
			}
			// The TSA certificate chains to the root (link by link, INTEROP.md).
			mustRun(t, "openssl", "verify", "-vfyopt", "distid:1234567812345678", "-partial_chain", "-CAfile", issuingPEM, tsaPEM)
		})
	}
}

// An independent RFC 3161 implementation (digitorus/timestamp, INTEROP.md)
// makes the request, parses the ECDSA token and verifies its signature;
// crypto/x509 checks the chain for timeStamping.
func TestDigitorusInterop(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"), "")
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		t.Run(h.String(), func(t *testing.T) {
			reqDER, err := timestamp.CreateRequest(strings.NewReader("digitorus"), &timestamp.RequestOptions{Hash: h, Certificates: true})
			if err != nil {
				t.Fatal(err)
			}
			status, _, body := tn.post("/tsa/ecdsa", QueryType, reqDER)
			if status != 200 {
				t.Fatalf("status %d", status)
			}
			ts, err := timestamp.ParseResponse(body)
			if err != nil {
				t.Fatalf("digitorus ParseResponse: %v", err)
			}
			sum := h.New()
			sum.Write([]byte("digitorus"))
			if !bytes.Equal(ts.HashedMessage, sum.Sum(nil)) || ts.HashAlgorithm != h || !ts.AddTSACertificate {
				t.Fatalf("digitorus sees %+v", ts)
			}
			if time.Since(ts.Time).Abs() > 5*time.Second || ts.Accuracy != time.Second {
				t.Errorf("time %s accuracy %s", ts.Time, ts.Accuracy)
			}
			_, rootCert := tn.caPEM("ecdsa-root")
			roots, inter := x509.NewCertPool(), x509.NewCertPool()
			r, err := x509.ParseCertificate(rootCert.Raw)
			if err != nil {
				t.Fatal(err)
			}
			roots.AddCert(r)
			for _, c := range ts.Certificates[1:] {
				inter.AddCert(c)
			}
			if _, err := ts.Certificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}}); err != nil {
				t.Fatalf("crypto/x509 chain: %v", err)
			}
		})
	}
}

// ACCEPTANCE.md G-02: each malformed request gets HTTP 200 and a rejection
// with its failure bit; an oversized body gets 413 unread; nothing is 5xx.
func TestMalformedRequestsG02(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"), "")
	sha := tsp.SHA256.Sum([]byte("x"))
	good := func(f func(r *tsp.Request)) []byte {
		r := tsp.NewRequest(tsp.SHA256, sha, big.NewInt(5), true)
		if f != nil {
			f(r)
		}
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ok := good(nil)
	tests := []struct {
		name  string
		ctype string
		body  []byte
		want  tsp.FailureInfo
	}{
		{"garbage", QueryType, []byte("GET / HTTP/1.0\r\n\r\n"), tsp.BadDataFormat},
		{"empty", QueryType, nil, tsp.BadDataFormat},
		{"truncated", QueryType, ok[:len(ok)-5], tsp.BadDataFormat},
		{"version 2", QueryType, good(func(r *tsp.Request) { r.Version = 2 }), tsp.BadDataFormat},
		{"unknown hash", QueryType, good(func(r *tsp.Request) { r.MessageImprint.HashAlgorithm = asn1.ObjectIdentifier{1, 2, 3, 4, 5} }), tsp.BadAlg},
		{"sha1", QueryType, good(func(r *tsp.Request) {
			r.MessageImprint.HashAlgorithm = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
			r.MessageImprint.HashedMessage = make([]byte, 20)
		}), tsp.BadAlg},
		{"digest length", QueryType, good(func(r *tsp.Request) { r.MessageImprint.HashedMessage = sha[:20] }), tsp.BadDataFormat},
		{"unknown policy", QueryType, good(func(r *tsp.Request) { r.ReqPolicy = asn1.ObjectIdentifier{1, 2, 3, 4} }), tsp.UnacceptedPolicy},
		{"critical extension", QueryType, good(func(r *tsp.Request) {
			r.Extensions = []tsp.Extension{{ID: asn1.ObjectIdentifier{1, 2, 3, 9}, Critical: true, Value: []byte{5, 0}}}
		}), tsp.UnacceptedExtension},
		{"wrong content type", "application/octet-stream", ok, tsp.BadDataFormat},
	}
	for _, tt := range tests {
		for _, path := range []string{"/tsa", "/tsa/ecdsa"} {
			t.Run(tt.name+path, func(t *testing.T) {
				status, ct, body := tn.post(path, tt.ctype, tt.body)
				if status != 200 || ct != ReplyType {
					t.Fatalf("HTTP %d %s", status, ct)
				}
				r, err := tsp.ParseResponse(body)
				if err != nil {
					t.Fatal(err)
				}
				if r.Status != tsp.StatusRejection || len(r.Failures) != 1 || r.Failures[0] != tt.want {
					t.Fatalf("status %d failures %v (%q), want rejection %s", r.Status, r.Failures, r.StatusString, tt.want)
				}
			})
		}
	}
	t.Run("10 MB body", func(t *testing.T) {
		status, _, _ := tn.post("/tsa", QueryType, make([]byte, 10<<20))
		if status != http.StatusRequestEntityTooLarge {
			t.Fatalf("HTTP %d, want 413", status)
		}
	})
	t.Run("unknown profile", func(t *testing.T) {
		if status, _, _ := tn.post("/tsa/rsa", QueryType, ok); status != http.StatusNotFound {
			t.Fatalf("HTTP %d, want 404", status)
		}
	})
	t.Run("still granting", func(t *testing.T) {
		if r, _ := tn.stamp("/tsa", ok); r.Status != tsp.StatusGranted {
			t.Fatalf("status %d after the bad requests", r.Status)
		}
	})
}

// Trusted time: tokens only while the clock agrees with the NTP reference
// within the accuracy; timeNotAvailable and /readyz otherwise.
func TestTrustedTime(t *testing.T) {
	ntp := newFakeNTP(t)
	tn := startNode(t, filepath.Join(t.TempDir(), "data"), fmt.Sprintf("tsa:\n  ntp_servers: [%q]\n  ntp_interval: 1h\n  accuracy: 1s\n", ntp.addr()))
	req, _ := tsp.NewRequest(tsp.SM3, tsp.SM3.Sum([]byte("t")), nil, false).Marshal()
	ctx := context.Background()
	expect := func(state string, wantFail bool) {
		t.Helper()
		r, _ := tn.stamp("/tsa", req)
		if wantFail != (r.Status == tsp.StatusRejection) || wantFail && r.Failures[0] != tsp.TimeNotAvailable {
			t.Fatalf("%s: status %d %v", state, r.Status, r.Failures)
		}
		status, body := tn.get("http://"+tn.n.Addresses().HTTP+"/readyz", "")
		if wantFail != (status == http.StatusServiceUnavailable) || wantFail && !strings.Contains(string(body), "tsa") {
			t.Fatalf("%s: readyz %d %s", state, status, body)
		}
	}
	expect("in sync", false)
	ntp.offset.Store(int64(5 * time.Second))
	if st := tn.svc.clock.poll(ctx); st.ok || !strings.Contains(st.reason, "exceeds the stated accuracy") {
		t.Fatalf("5 s off: %+v", st)
	}
	expect("5 s off", true)
	var rej *client.RejectedError
	if _, err := client.New("http://"+tn.n.Addresses().HTTP+"/tsa").Stamp(ctx, []byte("x")); !errors.As(err, &rej) || rej.Failures[0] != tsp.TimeNotAvailable {
		t.Fatalf("client while 5 s off: %v", err)
	}
	ntp.offset.Store(int64(-300 * time.Millisecond))
	tn.svc.clock.poll(ctx)
	expect("300 ms off, within 1 s", false)
	ntp.conn.Close()
	if st := tn.svc.clock.poll(ctx); st.ok || !strings.Contains(st.reason, "time source lost") {
		t.Fatalf("server gone: %+v", st)
	}
	expect("source lost", true)
}

// Between polls the wall clock is checked against the monotonic clock: a
// step that takes the offset beyond the accuracy, or a last good poll
// older than twice the interval and a poll's time, is timeNotAvailable
// (and a step asks for a poll), without waiting for the next poll.
func TestClockBetweenPolls(t *testing.T) {
	ntp := newFakeNTP(t)
	wall := clock.NewFake(time.Now())
	var mono time.Duration
	var mu sync.Mutex
	w := &timeWatch{servers: []string{ntp.addr()}, accuracy: time.Second, interval: 64 * time.Second, now: wall.Now,
		mono: func() time.Duration { mu.Lock(); defer mu.Unlock(); return mono }, kick: make(chan struct{}, 1)}
	advance := func(wallBy, monoBy time.Duration) {
		wall.Add(wallBy)
		mu.Lock()
		mono += monoBy
		mu.Unlock()
	}
	expect := func(state string, ok bool, reason string) {
		t.Helper()
		st := w.check()
		if st.ok != ok || !strings.Contains(st.reason, reason) {
			t.Fatalf("%s: %+v", state, st)
		}
	}
	// The fake wall clock stands still while the real one (the server's)
	// runs: the poll measures the test's own time, well under 1 s.
	if st := w.poll(context.Background()); !st.ok {
		t.Fatalf("in sync: %+v", st)
	}
	expect("just polled", true, "")
	advance(30*time.Second, 30*time.Second)
	expect("30 s on, both clocks", true, "")
	advance(-time.Hour, 0)
	expect("stepped back an hour", false, "moved -1h0m0s against the monotonic clock")
	select {
	case <-w.kick:
	default:
		t.Fatal("a step did not ask for a poll")
	}
	advance(time.Hour, 0)
	expect("stepped back again", true, "")
	advance(600*time.Millisecond, 0)
	expect("600 ms ahead, within 1 s", true, "")
	advance(600*time.Millisecond, 0)
	expect("1.2 s ahead", false, "exceeds the stated accuracy 1s")
	advance(-1200*time.Millisecond, 0)
	advance(2*64*time.Second+3*time.Second-30*time.Second, 2*64*time.Second+3*time.Second-30*time.Second)
	expect("just within the age", true, "")
	advance(time.Second, time.Second)
	expect("stale", false, "time not checked for 2m12s")
	// A poll brings the time back (the fake clock back to the server's).
	wall.Set(time.Now())
	if st := w.poll(context.Background()); !st.ok {
		t.Fatalf("polled again: %+v", st)
	}
	expect("polled again", true, "")
}

// The node: a clock stepped back between polls gets timeNotAvailable, and
// /readyz says why, before the next scheduled poll (an hour away).
func TestClockStepRefusesTokens(t *testing.T) {
	ntp := newFakeNTP(t)
	wall := &steppedClock{}
	tn := startNodeClock(t, filepath.Join(t.TempDir(), "data"), fmt.Sprintf("tsa:\n  ntp_servers: [%q]\n  ntp_interval: 1h\n  accuracy: 1s\n", ntp.addr()), "", wall)
	req, _ := tsp.NewRequest(tsp.SM3, tsp.SM3.Sum([]byte("step")), big.NewInt(1), false).Marshal()
	if _, _, err := tn.svc.Stamp(context.Background(), "sm2", req); err != nil {
		t.Fatalf("in sync: %v", err)
	}
	wall.offset.Add(int64(-time.Hour)) // date -s, or a VM resumed with a stale clock
	if _, _, err := tn.svc.Stamp(context.Background(), "sm2", req); tsp.FailureOf(err) != tsp.TimeNotAvailable {
		t.Fatalf("after a step back of an hour: %v, want timeNotAvailable", err)
	}
	// The step asked for a poll, which may have answered already: either
	// reason is right.
	status, body := tn.get("http://"+tn.n.Addresses().HTTP+"/readyz", "")
	if status != http.StatusServiceUnavailable || !strings.Contains(string(body), "moved -1h0m0s") && !strings.Contains(string(body), "exceeds the stated accuracy") {
		t.Fatalf("readyz %d %s", status, body)
	}
}

// steppedClock is the system clock plus an offset a test steps.
type steppedClock struct{ offset atomic.Int64 }

func (c *steppedClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())).UTC() }

// Production mode without a time reference issues nothing.
func TestNoReferenceInProduction(t *testing.T) {
	w := &timeWatch{noSource: "no time reference", now: time.Now}
	if st := w.poll(context.Background()); st.ok {
		t.Fatal("no reference trusted")
	}
}

// Serials are unique and every token is recorded before it is returned,
// across a restart; the look-up API returns the recorded token.
func TestSerialsRecordsAndLookup(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testSerialsRecordsAndLookup(t, "") })
	t.Run("postgres", func(t *testing.T) { testSerialsRecordsAndLookup(t, storetest.PostgresURL(t)) })
}

func testSerialsRecordsAndLookup(t *testing.T, dbURL string) {
	dir := filepath.Join(t.TempDir(), "data")
	serials := map[string]bool{}
	var mu sync.Mutex
	for round := 0; round < 2; round++ {
		tn := startNodeDB(t, dir, "", dbURL)
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					req, _ := tsp.NewRequest(tsp.SM3, tsp.SM3.Sum([]byte{byte(i)}), big.NewInt(int64(i)), false).Marshal()
					r, _ := tn.stamp("/tsa", req)
					tok, err := tsp.ParseToken(r.Token)
					if err != nil {
						t.Error(err)
						return
					}
					s := fmt.Sprintf("%x", tok.Info.SerialNumber)
					mu.Lock()
					if serials[s] {
						t.Errorf("serial %s issued twice", s)
					}
					serials[s] = true
					mu.Unlock()
					rec, err := tn.svc.Token(context.Background(), s)
					if err != nil {
						t.Errorf("token %s returned but not recorded: %v", s, err)
						return
					}
					if stored, _ := base64.StdEncoding.DecodeString(rec.Token); !bytes.Equal(stored, r.Token) {
						t.Errorf("token %s recorded differs from the one returned", s)
					}
				}
			}()
		}
		wg.Wait()
		var n int
		if err := tn.n.Env().DB.QueryRow(context.Background(), "SELECT COUNT(*) FROM tsa_tokens").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != len(serials) {
			t.Fatalf("round %d: %d tokens recorded, %d received", round, n, len(serials))
		}
		if round == 1 {
			// The look-up API: an application may, without a token nobody may.
			var any string
			for s := range serials {
				any = s
				break
			}
			url := "https://" + tn.n.Addresses().HTTPS + "/api/v1/tsa/tokens/" + strings.ToUpper(any)
			if status, _ := tn.get(url, ""); status != http.StatusUnauthorized {
				t.Errorf("anonymous look-up: %d", status)
			}
			status, body := tn.get(url, tn.appToken())
			var rec TokenRecord
			if status != 200 || json.Unmarshal(body, &rec) != nil || rec.Serial != any || rec.Profile != "sm2" || rec.HashAlg != "sm3" {
				t.Errorf("look-up: %d %s", status, body)
			}
			if status, _ := tn.get("https://"+tn.n.Addresses().HTTPS+"/api/v1/tsa/tokens/0123", tn.appToken()); status != http.StatusNotFound {
				t.Errorf("unknown serial: %d", status)
			}
		}
		tn.stop()
	}
}

// ACCEPTANCE.md G-05: after a rollover, tokens from before and after both
// verify with the published chain, and the old certificate stays published.
func TestRolloverG05(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"), "")
	for _, profile := range []string{"sm2", "ecdsa"} {
		t.Run(profile, func(t *testing.T) {
			path, root := "/tsa/"+profile, profile+"-root"
			h := map[string]*tsp.HashAlg{"sm2": tsp.SM3, "ecdsa": tsp.SHA256}[profile]
			data := []byte("rollover " + profile)
			req, _ := tsp.NewRequest(h, h.Sum(data), big.NewInt(1), false).Marshal()
			before, _ := tn.stamp(path, req)
			oldCert := tn.svc.units.Load().active[profile].cert
			newCert, err := tn.svc.Rollover(context.Background(), profile, "test")
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(newCert.Raw, oldCert.Raw) {
				t.Fatal("rollover kept the certificate")
			}
			after, _ := tn.stamp(path, req)
			status, pemChain := tn.get("http://"+tn.n.Addresses().HTTP+"/tsa/"+profile+"/certs", "")
			if status != 200 {
				t.Fatalf("certs: %d", status)
			}
			published := parsePEMs(t, pemChain)
			if !bytes.Equal(published[0].Raw, newCert.Raw) || !bytes.Equal(published[1].Raw, oldCert.Raw) {
				t.Fatal("published certificates are not the new then the old")
			}
			var signers [][]byte
			for _, r := range []*tsp.Response{before, after} {
				tok, err := tsp.ParseToken(r.Token)
				if err != nil {
					t.Fatal(err)
				}
				// Verified with nothing but the published certificates.
				c, err := tok.Verify(tsp.VerifyOptions{Roots: tn.roots(root), Intermediates: published, Data: data})
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				signers = append(signers, c.Raw)
			}
			if !bytes.Equal(signers[0], oldCert.Raw) || !bytes.Equal(signers[1], newCert.Raw) {
				t.Fatal("tokens not signed by the old then the new unit")
			}
			if profile == "ecdsa" {
				dir := t.TempDir()
				rootPEM, _ := tn.caPEM(root)
				chain := filepath.Join(dir, "published.pem")
				if err := os.WriteFile(chain, pemChain, 0o600); err != nil {
					t.Fatal(err)
				}
				doc := filepath.Join(dir, "doc")
				_ = os.WriteFile(doc, data, 0o600)
				for i, r := range []*tsp.Response{before, after} {
					f := filepath.Join(dir, fmt.Sprintf("%d.tsr", i))
					_ = os.WriteFile(f, tsp.Granted(r.Token), 0o600)
					out := mustRun(t, "openssl", "ts", "-verify", "-in", f, "-data", doc, "-CAfile", rootPEM, "-untrusted", chain)
					if !strings.Contains(out, "Verification: OK") {
						t.Fatalf("openssl ts -verify token %d: %s", i, out)
					}
				}
			}
		})
	}
	// A restart keeps the rolled-over units.
	dir := tn.dir
	gen := tn.svc.units.Load().active["sm2"].generation
	tn.stop()
	tn2 := startNode(t, dir, "")
	if g := tn2.svc.units.Load().active["sm2"].generation; g != gen || len(tn2.svc.units.Load().all["sm2"]) != 2 {
		t.Fatalf("after restart: generation %d (want %d), %d units", g, gen, len(tn2.svc.units.Load().all["sm2"]))
	}
}

// The Go client: a verified token with trust anchors, a refusal with the
// wrong ones, and a match of imprint and nonce.
func TestClient(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"), "")
	ctx := context.Background()
	for _, c := range []struct{ profile, root, wrong string }{{"sm2", "sm2-root", "ecdsa-root"}, {"ecdsa", "ecdsa-root", "sm2-root"}} {
		t.Run(c.profile, func(t *testing.T) {
			cl := client.New("http://" + tn.n.Addresses().HTTP + "/tsa/" + c.profile)
			cl.Hash, cl.Roots = tsp.SHA384, tn.roots(c.root)
			res, err := cl.Stamp(ctx, []byte("client"))
			if err != nil {
				t.Fatal(err)
			}
			if res.TSA == nil || !bytes.Equal(res.Info.MessageImprint.HashedMessage, tsp.SHA384.Sum([]byte("client"))) {
				t.Fatalf("result %+v", res)
			}
			cl.Roots = tn.roots(c.wrong)
			if _, err := cl.Stamp(ctx, []byte("client")); !errors.Is(err, tsp.ErrVerify) {
				t.Fatalf("with another root: %v", err)
			}
		})
	}
}

func parsePEMs(t *testing.T, b []byte) []*smx509.Certificate {
	t.Helper()
	var out []*smx509.Certificate
	for {
		blk, rest := pemDecode(b)
		if blk == nil {
			return out
		}
		c, err := smx509.ParseCertificate(blk)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
		b = rest
	}
}

// The look-up's gen_time is the token's genTime, to the nanosecond: the
// token encodes milliseconds, so a clock reading with finer digits must not
// reach the record.
func TestLookupGenTimeIsTokenGenTime(t *testing.T) {
	fake := clock.NewFake(time.Now().Truncate(time.Second).Add(123456789 * time.Nanosecond))
	tn := startNodeClock(t, filepath.Join(t.TempDir(), "data"), "", "", fake)
	req, _ := tsp.NewRequest(tsp.SM3, tsp.SM3.Sum([]byte("gen_time")), big.NewInt(1), false).Marshal()
	tok, serial, err := tn.svc.Stamp(context.Background(), "sm2", req)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := tsp.ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := tn.svc.Token(context.Background(), serial)
	if err != nil {
		t.Fatal(err)
	}
	got, err := time.Parse(time.RFC3339Nano, rec.GenTime)
	if err != nil || !got.Equal(pt.Info.GenTime) {
		t.Fatalf("look-up gen_time %q (%v), token genTime %s", rec.GenTime, err, pt.Info.GenTime.Format(time.RFC3339Nano))
	}
	if want := fake.Now().Truncate(time.Millisecond); !pt.Info.GenTime.Equal(want) {
		t.Fatalf("genTime %s, want the clock to the millisecond %s", pt.Info.GenTime, want)
	}
}

// NTP timestamps carry seconds modulo 2^32: from 2036-02-07T06:28:16Z on
// they are read in era 1, the one closest to the local clock, and a server
// answering then is still in sync with a clock that agrees with it.
func TestNTPEra(t *testing.T) {
	wrap := time.Date(2036, 2, 7, 6, 28, 16, 0, time.UTC)
	for _, at := range []time.Time{
		time.Date(2026, 11, 22, 10, 0, 0, 250e6, time.UTC),
		wrap.Add(-500 * time.Millisecond), wrap, wrap.Add(time.Millisecond),
		time.Date(2036, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		for _, skew := range []time.Duration{0, -time.Hour, 40 * 365 * 24 * time.Hour, -40 * 365 * 24 * time.Hour} {
			if got := fromNTP(toNTP(at), at.Add(skew)); got.Sub(at).Abs() > time.Nanosecond {
				t.Errorf("%s read with the local clock %s off: %s", at, skew, got)
			}
		}
	}
	ntp := newFakeNTP(t)
	ahead := time.Until(time.Date(2036, 6, 1, 0, 0, 0, 0, time.UTC))
	ntp.offset.Store(int64(ahead))
	smp, err := queryNTP(context.Background(), ntp.addr(), func() time.Time { return time.Now().Add(ahead) }, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if smp.offset.Abs() > time.Second {
		t.Fatalf("in 2036 a server in agreement measures an offset of %s", smp.offset)
	}
}

// In the issuing CAs' last months a unit's certificate is clamped to its
// CA's notAfter. A unit whose certificate ends within the margin is
// replaced when a CA can issue one that ends later (ecdsa, whose CA is
// rolled over), and kept otherwise (sm2: a new unit would end no later);
// no token is made once the certificate has ended: systemFailure, and
// /readyz says why.
func TestUnitCertificateEnd(t *testing.T) {
	fake := clock.NewFake(time.Now())
	tn := startNodeClock(t, filepath.Join(t.TempDir(), "data"), "", "", fake)
	ctx := context.Background()
	_, ecdsaCA := tn.caPEM("ecdsa-issuing")
	_, sm2CA := tn.caPEM("sm2-issuing")
	caEnd := ecdsaCA.NotAfter
	if !sm2CA.NotAfter.Equal(caEnd) {
		t.Fatalf("issuing CAs end %s and %s", sm2CA.NotAfter, caEnd)
	}
	roots := tn.roots("ecdsa-root")
	active := func(profile string) *unit { return tn.svc.units.Load().active[profile] }
	stamp := func(profile string, h *tsp.HashAlg) ([]byte, error) {
		req, _ := tsp.NewRequest(h, h.Sum([]byte("end")), big.NewInt(1), true).Marshal()
		tok, _, err := tn.svc.Stamp(ctx, profile, req)
		return tok, err
	}

	// Six months before the CAs end: the key-use period is over, the new
	// units end with their CAs.
	fake.Set(caEnd.Add(-180 * 24 * time.Hour))
	if err := tn.svc.rollDue(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"sm2", "ecdsa"} {
		if u := active(p); u.generation != 2 || !u.cert.NotAfter.Equal(caEnd) {
			t.Fatalf("%s: unit %d ends %s, want 2 ending with its CA %s", p, u.generation, u.cert.NotAfter, caEnd)
		}
	}
	// The ECDSA CA is rolled over; 20 days before the end (within the
	// 30-day margin of a six-month certificate) only the ECDSA unit can
	// get a certificate that ends later.
	if _, err := tn.ca.Rollover(ctx, "test", "ecdsa-issuing", ""); err != nil {
		t.Fatal(err)
	}
	fake.Set(caEnd.Add(-20 * 24 * time.Hour))
	if err := tn.svc.rollDue(ctx); err != nil {
		t.Fatal(err)
	}
	if u := active("ecdsa"); u.generation != 3 || !u.cert.NotAfter.After(caEnd.Add(365*24*time.Hour)) {
		t.Fatalf("ecdsa: unit %d ends %s, want 3 from the new CA generation", u.generation, u.cert.NotAfter)
	}
	if u := active("sm2"); u.generation != 2 {
		t.Fatalf("sm2: unit %d, want 2 kept (no CA ends later)", u.generation)
	}
	if err := tn.svc.Ready(ctx); err != nil {
		t.Fatalf("ready 20 days before the end: %v", err)
	}
	if _, err := stamp("sm2", tsp.SM3); err != nil {
		t.Fatalf("sm2 before its certificate ends: %v", err)
	}

	// A day after the end: sm2 answers systemFailure, ECDSA tokens verify.
	fake.Set(caEnd.Add(24 * time.Hour))
	if err := tn.svc.rollDue(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := stamp("sm2", tsp.SM3); err == nil || tsp.FailureOf(err) != tsp.SystemFailure {
		t.Fatalf("sm2 after its certificate ended: %v, want systemFailure", err)
	}
	if err := tn.svc.Ready(ctx); err == nil || !strings.Contains(err.Error(), "tsa sm2: the certificate of unit 2 is valid from") {
		t.Fatalf("ready after the sm2 certificate ended: %v", err)
	}
	tok, err := stamp("ecdsa", tsp.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := tsp.ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pt.Verify(tsp.VerifyOptions{Roots: roots, Data: []byte("end")}); err != nil {
		t.Fatalf("ECDSA token after the rollover: %v", err)
	}
}

// failingIssuer is the CA, refusing the certificates of one issuing CA.
type failingIssuer struct {
	*ca.Service
	refuse string
}

func (f failingIssuer) IssueFor(ctx context.Context, caID, profile string, csr []byte, record map[string]string, actor string) ([]byte, [][]byte, error) {
	if caID == f.refuse {
		return nil, nil, errors.New("refused for the test")
	}
	return f.Service.IssueFor(ctx, caID, profile, csr, record, actor)
}

// A profile whose rollover fails does not hold up the others, and leaves
// no key behind.
func TestRollDueContinuesAfterFailure(t *testing.T) {
	fake := clock.NewFake(time.Now())
	tn := startNodeClock(t, filepath.Join(t.TempDir(), "data"), "", "", fake)
	ctx := context.Background()
	keys := func() int {
		ks, err := tn.n.Env().Keys.ListKeys(ctx, &hsm.ListKeysRequest{Service: keyService})
		if err != nil {
			t.Fatal(err)
		}
		return len(ks)
	}
	before := keys()
	tn.svc.issuer = failingIssuer{Service: tn.ca, refuse: "sm2-issuing"} // sm2 comes first
	fake.Add(366 * 24 * time.Hour)
	err := tn.svc.rollDue(ctx)
	if err == nil || !strings.Contains(err.Error(), "tsa sm2: unit 1 key-use period ended") || !strings.Contains(err.Error(), "refused for the test") {
		t.Fatalf("rollDue: %v", err)
	}
	if g := tn.svc.units.Load().active["ecdsa"].generation; g != 2 {
		t.Fatalf("ecdsa unit %d after sm2 failed, want 2", g)
	}
	if g := tn.svc.units.Load().active["sm2"].generation; g != 1 {
		t.Fatalf("sm2 unit %d, want 1 kept", g)
	}
	if n := keys(); n != before+1 {
		t.Fatalf("%d TSA keys, want %d (the ECDSA one added, the failed SM2 one deleted)", n, before+1)
	}
}

// The margin before a unit certificate's end: 30 days, a tenth of a long
// life, never more than half a short one.
func TestExpiryMargin(t *testing.T) {
	day := 24 * time.Hour
	for _, c := range []struct{ life, want time.Duration }{
		{5 * 365 * day, 5 * 365 * day / 10},
		{180 * day, 30 * day},
		{40 * day, 20 * day},
		{time.Hour, 30 * time.Minute},
	} {
		now := time.Now()
		if got := expiryMargin(&smx509.Certificate{NotBefore: now, NotAfter: now.Add(c.life)}); got != c.want {
			t.Errorf("life %s: margin %s, want %s", c.life, got, c.want)
		}
	}
}
