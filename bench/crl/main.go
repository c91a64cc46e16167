// Crl measures CRL generation (ACCEPTANCE.md §3, issue #5): how long
// ca/crl.Build takes and how much memory it needs for CRLs of 10^4, 10^5 and
// 10^6 entries, signed with SM2 and with ECDSA P-256, and then one full
// generation through the certificate authority's real path, from a SQLite
// revocation table of -db-rows revoked certificates.
//
// The memory cases feed Build from a generator that yields entries the way
// the CA's database cursor does (one reused *big.Int, 18-octet serials in
// increasing order, every allowed reason) and write the CRL to a file, as a
// publisher would. For each case the program prints the time, the CRL's
// size, the entries per second and that rate as a ratio to the raw signing
// rate of the same algorithm (bench/README.md; a CRL has one signature, so
// the ratio reads "entries listed in the time of one raw signature"), the
// peak growth of live heap objects during the build (runtime/metrics,
// sampled every 16384 entries) and the process's peak RSS during the case
// (VmHWM, reset through /proc/self/clear_refs before each case). Each CRL is
// then checked: signature over the TBS and entry count, walking the DER
// without materialising it.
//
// The CA case starts a node with the CA service in a temporary directory
// (SQLite, synchronous=FULL, software keystore), inserts -db-rows revoked
// certificates of sm2-issuing in batches, issues one SM2 certificate over
// the HTTPS API and revokes it: the revocation answers after the CA has
// made a full CRL and a delta CRL (its base is the scheduled full CRL made
// at start, so the delta lists every row too). The time of that request,
// the heap and RSS peaks during it, and the served CRLs (fetched and
// verified with ca/crl.Verify afterwards) are printed.
//
// Usage:
//
//	go run ./bench/crl [-sizes 10000,100000,1000000] [-db-rows 100000] [-ref-duration 1s]
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"math/big"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/bench/ref"
	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/ca/crl"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

type options struct {
	sizes       []int
	dbRows      int
	refDuration time.Duration
}

func main() {
	var o options
	sizes := flag.String("sizes", "10000,100000,1000000", "comma-separated entry counts of the in-memory cases")
	flag.IntVar(&o.dbRows, "db-rows", 100_000, "revoked rows in the SQLite case; 0 skips it")
	flag.DurationVar(&o.refDuration, "ref-duration", time.Second, "measuring time of each reference rate")
	flag.Parse()
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "bench/crl: bad size %q\n", s)
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/crl:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, o options) error {
	facts := ref.Collect(ctx)
	tmp, err := os.MkdirTemp("", "bench-crl-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	facts.Print(w)
	fmt.Fprintf(w, "storage:  CRL files in %s (memory cases); SQLite with synchronous=FULL (CA case)\n", os.TempDir())
	fmt.Fprintln(w, "keys:     in-process SM2 and ECDSA P-256 keys (memory cases); software keystore hsm/soft (CA case)")
	fmt.Fprintf(w, "duration: one CRL per case; reference %s per operation\n\n", o.refDuration)
	rates, err := ref.Measure(ctx, o.refDuration)
	if err != nil {
		return err
	}
	rates.Report(w)
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "signer\tentries\tCRL bytes\ttime\tentries/s\tratio\theap growth\tpeak RSS\t")
	for _, alg := range []string{"sm2", "ecdsa-p256"} {
		issuer, err := newIssuer(alg)
		if err != nil {
			return err
		}
		base := ref.SM2Sign
		if alg == "ecdsa-p256" {
			base = ref.P256Sign
		}
		for _, n := range o.sizes {
			r, err := memoryCase(ctx, tmp, issuer, n)
			if err != nil {
				return fmt.Errorf("%s, %d entries: %w", alg, n, err)
			}
			rate := float64(n) / r.elapsed.Seconds()
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.0f\t%.1f\t%s\t%s\t\n", alg, n, r.size, r.elapsed.Round(time.Millisecond),
				rate, rates.Ratio(rate, base), mib(r.heapGrowth), r.rss)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "ratio: entries per second / raw signatures per second of the same algorithm (one signature per CRL).")
	fmt.Fprintln(w, "heap growth: peak live heap objects during Build minus before it (runtime/metrics /memory/classes/heap/objects:bytes).")
	if o.dbRows > 0 {
		fmt.Fprintln(w)
		if err := caCase(ctx, w, tmp, o.dbRows); err != nil {
			return fmt.Errorf("CA case: %w", err)
		}
	}
	return nil
}

// issuer is a CA certificate and its key.
type issuer struct {
	cert   *smx509.Certificate
	signer crypto.Signer
}

func newIssuer(alg string) (*issuer, error) {
	var key crypto.Signer
	var err error
	if alg == "sm2" {
		key, err = sm2.GenerateKey(rand.Reader)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench " + alg + " CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign, SubjectKeyId: []byte{1, 2, 3, 4}}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &issuer{cert: cert, signer: key}, nil
}

// heapSampler records the peak of live heap objects.
type heapSampler struct {
	mu     sync.Mutex
	sample []metrics.Sample
	peak   uint64
}

func newHeapSampler() *heapSampler {
	return &heapSampler{sample: []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}}
}

func (h *heapSampler) read() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	metrics.Read(h.sample)
	v := h.sample[0].Value.Uint64()
	h.peak = max(h.peak, v)
	return v
}

// generated yields n entries in increasing serial order, as a database
// cursor would, sampling the heap every 16384 entries.
func generated(n int, at time.Time, h *heapSampler) iter.Seq2[crl.Entry, error] {
	reasons := []int{crl.ReasonKeyCompromise, crl.ReasonUnspecified, crl.ReasonSuperseded, crl.ReasonAffiliationChanged,
		crl.ReasonCessationOfOperation, crl.ReasonPrivilegeWithdrawn}
	base := new(big.Int).Lsh(big.NewInt(1), 136)
	stride := new(big.Int).Lsh(big.NewInt(0x9e3779b97f4a7c15>>1), 64)
	return func(yield func(crl.Entry, error) bool) {
		s, step := new(big.Int).Set(base), new(big.Int)
		for i := range n {
			step.SetInt64(int64(i*7919%65521) + 1)
			s.Add(s, step.Add(step, stride))
			if i&16383 == 0 {
				h.read()
			}
			if !yield(crl.Entry{Serial: s, RevokedAt: at.Add(-time.Duration(i) * time.Second), Reason: reasons[i%len(reasons)]}, nil) {
				return
			}
		}
	}
}

type caseResult struct {
	elapsed    time.Duration
	size       int64
	heapGrowth int64
	rss        string
}

func memoryCase(ctx context.Context, dir string, is *issuer, n int) (*caseResult, error) {
	path := filepath.Join(dir, "bench.crl")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	bw := bufio.NewWriterSize(f, 1<<16)
	now := time.Now().UTC().Truncate(time.Second)
	t := crl.Template{Issuer: is.cert, Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour),
		IDP: &crl.IssuingDistributionPoint{FullName: []string{"http://pki.example.gov.cn/pki/bench.crl"}}}

	runtime.GC()
	debug.FreeOSMemory()
	ref.ResetPeakRSS()
	h := newHeapSampler()
	before := h.read()
	start := time.Now()
	err = crl.Build(ctx, bw, t, generated(n, now, h), int64(n), is.signer)
	if err == nil {
		err = bw.Flush()
	}
	elapsed := time.Since(start)
	h.read()
	r := &caseResult{elapsed: elapsed, heapGrowth: int64(h.peak) - int64(before), rss: ref.PeakRSS()}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	der, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r.size = int64(len(der))
	if err := check(der, is.cert, n); err != nil {
		return nil, err
	}
	return r, nil
}

// check verifies a CRL's signature and counts its entries by walking the
// DER, without materialising the list.
func check(der []byte, cert *smx509.Certificate, n int) error {
	s := cryptobyte.String(der)
	var list, tbs, body, revoked cryptobyte.String
	var sig []byte
	if !s.ReadASN1(&list, cbasn1.SEQUENCE) || !list.ReadASN1Element(&tbs, cbasn1.SEQUENCE) ||
		!list.SkipASN1(cbasn1.SEQUENCE) || !list.ReadASN1BitStringAsBytes(&sig) {
		return errors.New("malformed CertificateList")
	}
	pub := cert.PublicKey.(*ecdsa.PublicKey)
	ok := false
	if pub.Curve == sm2.P256() {
		ok = sm2.VerifyASN1WithSM2(pub, nil, tbs, sig)
	} else {
		d := sha256.Sum256(tbs)
		ok = ecdsa.VerifyASN1(pub, d[:], sig)
	}
	if !ok {
		return errors.New("signature does not verify")
	}
	if !tbs.ReadASN1(&body, cbasn1.SEQUENCE) || !body.SkipASN1(cbasn1.INTEGER) || !body.SkipASN1(cbasn1.SEQUENCE) ||
		!body.SkipASN1(cbasn1.SEQUENCE) || !body.SkipASN1(cbasn1.UTCTime) || !body.SkipASN1(cbasn1.UTCTime) {
		return errors.New("malformed TBSCertList")
	}
	count := 0
	if n > 0 {
		if !body.ReadASN1(&revoked, cbasn1.SEQUENCE) {
			return errors.New("no revokedCertificates")
		}
		for !revoked.Empty() {
			if !revoked.SkipASN1(cbasn1.SEQUENCE) {
				return fmt.Errorf("malformed entry %d", count)
			}
			count++
		}
	}
	if count != n {
		return fmt.Errorf("%d entries, want %d", count, n)
	}
	return nil
}

// caCase measures one revocation's CRL generation through the CA with
// rows revoked certificates in SQLite.
func caCase(ctx context.Context, w io.Writer, tmp string, rows int) error {
	const caID = "sm2-issuing"
	dir := filepath.Join(tmp, "data")
	ptr := func(s string) *string { return &s }
	n, err := node.Start(ctx, node.Options{DataDir: dir, HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: io.Discard, Environ: os.Environ()}, ca.New())
	if err != nil {
		return fmt.Errorf("start node: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = n.Shutdown(sctx)
	}()
	db := n.Env().DB
	start := time.Now()
	if err := insertRevoked(ctx, db, caID, rows); err != nil {
		return err
	}
	fmt.Fprintf(w, "CA case: %d revoked rows of %s inserted in %s (SQLite, %s)\n", rows, caID, time.Since(start).Round(time.Millisecond), filepath.Join(dir, "govtrust.db"))

	token, err := node.ReadBootstrapToken(dir, "ra")
	if err != nil {
		return err
	}
	chain, err := os.ReadFile(filepath.Join(dir, "bootstrap", "tls-chain.pem"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(chain)
	c := &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}}
	api := "https://" + n.Addresses().HTTPS + "/api/v1/ca/" + caID

	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{DNSNames: []string{"bench.example.gov.cn"}}, key)
	if err != nil {
		return err
	}
	var issued ca.IssueResponse
	if err := postJSON(ctx, c, api+"/certificates", token, ca.IssueRequest{Profile: "server-tls",
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))}, &issued); err != nil {
		return fmt.Errorf("issue: %w", err)
	}

	runtime.GC()
	debug.FreeOSMemory()
	ref.ResetPeakRSS()
	h := newHeapSampler()
	before := h.read()
	stopSampling := make(chan struct{})
	var sampled sync.WaitGroup
	sampled.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				h.read()
			}
		}
	})
	start = time.Now()
	err = postJSON(ctx, c, api+"/revocations", token, ca.RevokeRequest{Serial: issued.Serial, Reason: "keyCompromise"}, nil)
	elapsed := time.Since(start)
	close(stopSampling)
	sampled.Wait()
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	growth, rss := int64(h.peak)-int64(before), ref.PeakRSS()

	issuingPEM, _ := pem.Decode([]byte(issued.Chain[0]))
	if issuingPEM == nil {
		return errors.New("no issuing CA certificate in the chain")
	}
	issuingCert, err := smx509.ParseCertificate(issuingPEM.Bytes)
	if err != nil {
		return err
	}
	var sizes []string
	for _, name := range []string{caID + ".crl", caID + "-delta.crl"} {
		resp, err := c.Get("http://" + n.Addresses().HTTP + "/pki/" + name)
		if err != nil {
			return err
		}
		der, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		rl, err := crl.Verify(der, issuingCert)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if len(rl.RevokedCertificateEntries) != rows+1 {
			return fmt.Errorf("%s lists %d entries, want %d", name, len(rl.RevokedCertificateEntries), rows+1)
		}
		sizes = append(sizes, fmt.Sprintf("%s %d bytes, %d entries, number %v", name, len(der), rows+1, rl.Number))
	}
	fmt.Fprintf(w, "revocation answered after a full and a delta CRL of %d entries each: %s\n", rows+1, elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "heap growth during it: %s; peak RSS during it: %s\n", mib(growth), rss)
	fmt.Fprintf(w, "served and verified: %s\n", strings.Join(sizes, "; "))
	return nil
}

// insertRevoked inserts rows revoked certificates of caID in batches; the
// database's trigger gives each its revocation sequence.
func insertRevoked(ctx context.Context, db *store.DB, caID string, rows int) error {
	now := time.Now().UTC().Truncate(time.Second)
	revoked, na := now.Add(-time.Hour).Format(time.RFC3339Nano), now.Add(365*24*time.Hour).Format(time.RFC3339Nano)
	nb := now.Add(-48 * time.Hour).Format(time.RFC3339Nano)
	const batch = 10_000
	serial := make([]byte, 17)
	for done := 0; done < rows; {
		err := db.Tx(ctx, func(tx *store.Tx) error {
			for i := 0; i < batch && done+i < rows; i++ {
				if _, err := rand.Read(serial[1:]); err != nil {
					return err
				}
				serial[0] = 0x01
				if _, err := tx.Exec(ctx, `INSERT INTO ca_certificates (issuer_id, serial, subject, profile, not_before, not_after, der, status,
					requester, requester_org, created_at, revoked_at, revocation_reason) VALUES (?, ?, 'CN=bench', 'server-tls', ?, ?, ?, 'revoked', 'bench', 'bench', ?, ?, ?)`,
					caID, hex.EncodeToString(serial), nb, na, []byte{0x30, 0}, nb, revoked, (done+i)%6); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("insert revoked rows: %w", err)
		}
		done += batch
	}
	return nil
}

func postJSON(ctx context.Context, c *http.Client, url, token string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }
