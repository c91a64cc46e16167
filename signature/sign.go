package signature

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/signature/cms"
	"github.com/govtrust/govtrust/tsa/tsp"
)

// StampFunc obtains an RFC 3161 token (DER ContentInfo) over digest made
// with h; profile is the TSA profile ("sm2" or "ecdsa").
type StampFunc func(ctx context.Context, profile string, h *cms.Hash, digest []byte) ([]byte, error)

// Stamper is the platform TSA as the signing service needs it (tsa.Service
// has this method; cmd/govtrust wires it in).
type Stamper interface {
	Stamp(ctx context.Context, profile string, der []byte) ([]byte, string, error)
}

// StampVia turns a Stamper into a StampFunc: it builds the TimeStampReq
// (certReq set, a 64-bit nonce) and checks the token answers it.
func StampVia(s Stamper) StampFunc {
	return func(ctx context.Context, profile string, h *cms.Hash, digest []byte) ([]byte, error) {
		nonce, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
		if err != nil {
			return nil, err
		}
		req := tsp.NewRequest(h, digest, nonce, true)
		der, err := req.Marshal()
		if err != nil {
			return nil, err
		}
		tok, _, err := s.Stamp(ctx, profile, der)
		if err != nil {
			return nil, fmt.Errorf("time-stamp: %w", err)
		}
		t, err := tsp.ParseToken(tok)
		if err != nil {
			return nil, fmt.Errorf("time-stamp: %w", err)
		}
		if t.Info.Nonce == nil || t.Info.Nonce.Cmp(nonce) != 0 {
			return nil, errors.New("time-stamp: the token does not answer the request")
		}
		return tok, nil
	}
}

// Mode of a signature.
const (
	ModeCMS = "cms"
	ModeRaw = "raw"
)

// Options say what to make.
type Options struct {
	Mode string // ModeCMS (default) or ModeRaw
	// Data is signed; or Digest, made with Hash, in hash-only mode (for
	// raw SM2, e = SM3(Z‖M) of cms.SM2Digest).
	Data   []byte
	Digest []byte
	Hash   *cms.Hash
	// Detached leaves the content out of the CMS (always so in hash-only mode).
	Detached bool
	Family   cms.Family
	// SM2OID is the SignerInfo signature algorithm for SM2 keys (default sm2sign).
	SM2OID []int
	UID    []byte
	// Timestamp adds a signature time-stamp (CAdES-T); Stamp is required.
	Timestamp bool
	// LTV embeds the chain, the TSA's chain, OCSP responses (or CRLs) for
	// every certificate of both and an archive time-stamp, for offline
	// verification years later. It implies Timestamp; Fetch is required.
	LTV bool
}

// Signing is one signing operation's key material and helpers.
type Signing struct {
	Key   crypto.Signer
	Cert  *smx509.Certificate
	Chain []*smx509.Certificate // issuers, up to the root
	Stamp StampFunc
	// Verifier gives LTV its revocation fetcher and anchors.
	Verifier *Verifier
}

func tsaProfile(pub crypto.PublicKey) string {
	if k, ok := pub.(*ecdsa.PublicKey); ok && sm2.IsSM2PublicKey(k) {
		return "sm2"
	}
	return "ecdsa"
}

// Sign makes the signature o asks for.
func (s *Signing) Sign(ctx context.Context, o *Options) ([]byte, error) {
	if o.Mode == ModeRaw {
		if o.Timestamp || o.LTV {
			return nil, errors.New("signature: time-stamps and LTV need a CMS signature")
		}
		return cms.SignRaw(s.Key, o.Hash, o.UID, o.Data, o.Digest)
	}
	signer := &cms.Signer{Certificate: s.Cert, Key: s.Key, Chain: s.Chain, UID: o.UID, SM2OID: o.SM2OID,
		SigningTime: time.Now(), SigningCertificateV2: true}
	opts := &cms.Options{Family: o.Family, Detached: o.Detached}
	var sd *cms.SignedData
	var err error
	if o.Data != nil {
		if o.Hash != nil {
			signer.Digest = o.Hash
		}
		sd, err = cms.New(o.Data, []*cms.Signer{signer}, opts)
	} else {
		sd, err = cms.NewFromDigest(o.Hash, o.Digest, []*cms.Signer{signer}, opts)
	}
	if err != nil {
		return nil, err
	}
	if o.Timestamp || o.LTV {
		if s.Stamp == nil {
			return nil, errors.New("signature: no time-stamping authority")
		}
		si := sd.Signers[0]
		h := si.Digest
		tok, err := s.Stamp(ctx, tsaProfile(s.Key.Public()), h, si.TimeStampImprint(h))
		if err != nil {
			return nil, err
		}
		si.AddSignatureTimeStamp(tok)
		if o.LTV {
			if err := s.addValidationData(ctx, sd, tok, o); err != nil {
				return nil, err
			}
		}
	}
	return sd.Marshal()
}

// addValidationData embeds what an offline verifier needs (CAdES-X-Long
// and -A style): certificates, OCSP responses or CRLs, then an archive
// time-stamp over all of it.
func (s *Signing) addValidationData(ctx context.Context, sd *cms.SignedData, tok []byte, o *Options) error {
	v := s.Verifier
	if v == nil || v.Fetch == nil {
		return errors.New("signature: LTV needs a revocation fetcher")
	}
	t, err := tsp.ParseToken(tok)
	if err != nil {
		return err
	}
	pool := append(append(append([]*smx509.Certificate{}, s.Chain...), t.Certificates...), v.Intermediates...)
	for _, leaf := range []*smx509.Certificate{s.Cert, tsaCert(t)} {
		if leaf == nil {
			continue
		}
		chains, err := leaf.Verify(smx509.VerifyOptions{Roots: poolOf(v.Roots), Intermediates: poolOf(pool), KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}})
		if err != nil || len(chains) == 0 {
			return fmt.Errorf("signature: LTV: no chain for %s: %w", leaf.Subject, err)
		}
		for k, c := range chains[0] {
			sd.AddCertificate(c)
			if k+1 == len(chains[0]) {
				break
			}
			if err := s.embedStatus(ctx, sd, c, chains[0][k+1]); err != nil {
				return fmt.Errorf("signature: LTV: %s: %w", c.Subject, err)
			}
		}
	}
	content := o.Data
	if content == nil {
		return errors.New("signature: LTV archive time-stamps need the content, not only its digest")
	}
	h := sd.Signers[0].Digest
	imprint, err := sd.ArchiveImprint(0, h, content)
	if err != nil {
		return err
	}
	atok, err := s.Stamp(ctx, tsaProfile(s.Key.Public()), h, imprint)
	if err != nil {
		return err
	}
	return sd.AddArchiveTimeStamp(0, atok)
}

func poolOf(certs []*smx509.Certificate) *smx509.CertPool { return pool(certs) }

func tsaCert(t *tsp.Token) *smx509.Certificate {
	for _, c := range t.Certificates {
		for _, eku := range c.ExtKeyUsage {
			if eku == smx509.ExtKeyUsageTimeStamping {
				return c
			}
		}
	}
	return nil
}

// embedStatus fetches an OCSP response (else a CRL) for cert and embeds it.
// Only evidence the verifier would take is embedded: a CRL from one of
// cert's distribution points must list it, or be complete for it
// (crlEvidence: not a delta CRL, an issuingDistributionPoint that covers
// it, no critical extension not processed) and current.
func (s *Signing) embedStatus(ctx context.Context, sd *cms.SignedData, cert, issuer *smx509.Certificate) error {
	f := s.Verifier.Fetch
	var errs []error
	for _, url := range cert.OCSPServer {
		req, err := ocsp.CreateRequest(cert, issuer, nil)
		if err != nil {
			return err
		}
		der, err := f.OCSP(ctx, url, req)
		if err == nil {
			if _, err = ocspEvidence(der, cert, issuer, "ocsp", url, s.Verifier.now()); err == nil {
				sd.AddOCSP(der)
				return nil
			}
		}
		errs = append(errs, err)
	}
	for _, url := range cert.CRLDistributionPoints {
		der, err := f.CRL(ctx, url)
		if err == nil {
			if _, err = crlEvidence(der, cert, issuer, "crl", url, s.Verifier.now()); err == nil {
				sd.AddCRL(der)
				return nil
			}
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return errors.New("no OCSP responder or CRL distribution point")
	}
	return errors.Join(errs...)
}
