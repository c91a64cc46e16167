package crl

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"math/big"
	"net/url"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/internal/der"
)

// MaxValidity is the longest interval between thisUpdate and nextUpdate that
// Build accepts: the govtrust promise (ACCEPTANCE.md, proposed SLOs), tighter
// than the 10 days of CA/B Forum BR §4.9.7.
const MaxValidity = 7 * 24 * time.Hour

// MaxOfflineValidity is the longest interval Build accepts for the CRL of an
// offline CA (Template.Offline: a root's ARL, signed in a key ceremony):
// CA/B Forum BR §4.9.7 lets the CRLs covering CA certificates have a
// nextUpdate up to twelve months after thisUpdate; 365 days is never more.
const MaxOfflineValidity = 365 * 24 * time.Hour

// CRLReason values (RFC 5280 §5.3.1). Value 7 is unused by the standard.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonCertificateHold      = 6 // refused: govtrust never suspends (BR §7.2.2)
	ReasonRemoveFromCRL        = 8 // refused: only meaningful after certificateHold
	ReasonPrivilegeWithdrawn   = 9
	ReasonAACompromise         = 10 // refused: govtrust issues no attribute certificates
)

// Errors callers tell apart with errors.Is.
var (
	// ErrInvalid reports a template or entry that would make a CRL outside
	// the profile; nothing was signed.
	ErrInvalid = errors.New("crl: invalid input")
	// ErrInconsistent reports that the entry iterator did not yield the same
	// sequence on every pass. When returned from the third pass the bytes
	// already written are not a valid CRL and must be discarded.
	ErrInconsistent = errors.New("crl: entries changed between passes")
	// ErrNumberRegression reports a CRL number not strictly greater than the
	// one already published (see CheckNumber).
	ErrNumberRegression = errors.New("crl: CRL number does not increase")
)

// Entry is one revoked certificate.
type Entry struct {
	// Serial is the certificate's serial number: positive, at most 20 octets
	// (RFC 5280 §4.1.2.2). Build does not keep it after the iterator's yield
	// returns, so a cursor may reuse one *big.Int for every entry.
	Serial *big.Int
	// RevokedAt is the revocationDate, written in whole seconds. It must not
	// be after the CRL's thisUpdate.
	RevokedAt time.Time
	// Reason is the RFC 5280 CRLReason. ReasonUnspecified (0) or -1 omits the
	// reasonCode extension, as BR §7.2.2 requires for unspecified;
	// certificateHold, removeFromCRL, aACompromise and unassigned values are
	// refused.
	Reason int
}

// IssuingDistributionPoint is the issuingDistributionPoint extension of a
// partitioned CRL or an ARL (RFC 5280 §5.2.5). Build marks it critical.
type IssuingDistributionPoint struct {
	// FullName lists the URIs this CRL is published at; they must be
	// byte-identical to the crlDistributionPoints of the certificates it
	// covers (BR §7.2.2.1).
	FullName []string
	// OnlyUser marks a CRL that covers only end-entity certificates.
	OnlyUser bool
	// OnlyCA marks an authority revocation list: only CA certificates.
	OnlyCA bool
}

// Template is everything in a CRL except its entries.
type Template struct {
	// Issuer is the issuing CA certificate: its subject becomes the CRL's
	// issuer (byte for byte) and its subjectKeyIdentifier the AKI. It must be
	// a CA allowed to sign CRLs, and its public key must be the signer's.
	Issuer *smx509.Certificate
	// Number is the cRLNumber, 1 ≤ Number < 2^159 (BR §7.2.2). Full and delta
	// CRLs of one scope share one strictly increasing sequence (RFC 5280 §5.2.3).
	Number *big.Int
	// ThisUpdate and NextUpdate are written in whole seconds, UTC;
	// ThisUpdate < NextUpdate ≤ ThisUpdate + MaxValidity (MaxOfflineValidity
	// when Offline).
	ThisUpdate, NextUpdate time.Time
	// Offline marks the CRL of an offline CA, signed in a key ceremony and
	// valid for months rather than days (see MaxOfflineValidity).
	Offline bool
	// DeltaBase, when set, makes a delta CRL: a critical deltaCRLIndicator
	// naming the number of the full CRL it updates (RFC 5280 §5.2.4);
	// 1 ≤ DeltaBase < Number.
	DeltaBase *big.Int
	// IDP, when set, adds a critical issuingDistributionPoint.
	IDP *IssuingDistributionPoint
	// FreshestCRL lists where the delta CRLs for this full CRL are published
	// (RFC 5280 §5.2.6), as the alternative names of one distribution point.
	// Not allowed on a delta CRL.
	FreshestCRL []string
}

// Build writes a signed DER CRL to w.
//
// Build ranges over entries three times (see the package comment); each pass
// must yield exactly count entries, sorted by strictly increasing serial, and
// the same ones every time. An error yielded by the iterator stops Build and
// is returned wrapped. Build checks ctx between entries, not inside w or the
// signer.
//
// On error nothing is signed, except for ErrInconsistent from the third pass
// and errors from w, after which what was written must be discarded.
func Build(ctx context.Context, w io.Writer, t Template, entries iter.Seq2[Entry, error], count int64, signer crypto.Signer) error {
	if count < 0 {
		return fmt.Errorf("%w: negative entry count %d", ErrInvalid, count)
	}
	if signer == nil || entries == nil || w == nil {
		return fmt.Errorf("%w: nil signer, entries or writer", ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := prepare(t, signer)
	if err != nil {
		return err
	}
	b := &builder{ctx: ctx, entries: entries, count: count, thisUpdate: p.thisUpdate}

	// Pass 1: measure revokedCertificates.
	revLen, err := b.pass(nil)
	if err != nil {
		return fmt.Errorf("crl: measure entries: %w", err)
	}
	var revHeader []byte
	if count > 0 { // RFC 5280 §5.1.2.6: absent, not empty, when nothing is revoked
		revHeader = der.AppendHeader(nil, tagSequence, int(revLen))
	}
	tbsContent := int64(len(p.prefix)) + int64(len(revHeader)) + revLen + int64(len(p.exts))
	if tbsContent > 1<<31-1-64 {
		return fmt.Errorf("%w: CRL of %d bytes is too large, partition it", ErrInvalid, tbsContent)
	}
	tbsHeader := der.AppendHeader(nil, tagSequence, int(tbsContent))

	// Pass 2: hash the TBSCertList and sign it.
	h := p.newHash()
	h.Write(tbsHeader)
	h.Write(p.prefix)
	h.Write(revHeader)
	n, err := b.pass(h)
	if err != nil {
		return fmt.Errorf("crl: hash entries: %w", err)
	}
	if n != revLen {
		return fmt.Errorf("%w: entries measured %d bytes, then %d", ErrInconsistent, revLen, n)
	}
	h.Write(p.exts)
	digest := h.Sum(nil)
	sig, err := signer.Sign(rand.Reader, digest, p.opts)
	if err != nil {
		return fmt.Errorf("crl: sign CRL %s: %w", t.Number, err)
	}
	// Check the signature before anything is published: a faulty HSM or a
	// signer that hashed the digest again (SM2 with the GM option) shows here.
	if !p.verify(digest, sig) {
		return fmt.Errorf("crl: sign CRL %s: signer returned a signature that does not verify", t.Number)
	}

	// Pass 3: write CertificateList, re-hashing the TBS.
	bitString := der.AppendHeader(nil, tagBitString, len(sig)+1)
	bitString = append(bitString, 0) // no unused bits
	bitString = append(bitString, sig...)
	tbsLen := int64(len(tbsHeader)) + tbsContent
	outer := der.AppendHeader(nil, tagSequence, int(tbsLen)+len(p.sigAlg)+len(bitString))

	h.Reset()
	ew := &errWriter{w: w}
	out := io.MultiWriter(ew, h)
	ew.Write(outer)
	out.Write(tbsHeader)
	out.Write(p.prefix)
	out.Write(revHeader)
	if ew.err != nil {
		return fmt.Errorf("crl: write: %w", ew.err)
	}
	n, err = b.pass(out)
	if ew.err != nil {
		return fmt.Errorf("crl: write: %w", ew.err)
	}
	if err != nil {
		return fmt.Errorf("crl: write entries: %w", err)
	}
	out.Write(p.exts)
	if n != revLen || string(h.Sum(nil)) != string(digest) {
		return fmt.Errorf("%w: the TBS written differs from the TBS signed; discard the output", ErrInconsistent)
	}
	ew.Write(p.sigAlg)
	ew.Write(bitString)
	if ew.err != nil {
		return fmt.Errorf("crl: write: %w", ew.err)
	}
	return nil
}

// errWriter remembers the first error of w and writes nothing after it, so
// that io.MultiWriter keeps feeding the hash and Build reports the cause.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err == nil {
		_, e.err = e.w.Write(p)
	}
	return len(p), nil
}

// prepared holds the fixed parts of the CRL and the signature algorithm.
type prepared struct {
	thisUpdate time.Time
	prefix     []byte // version, signature, issuer, thisUpdate, nextUpdate
	exts       []byte // [0] EXPLICIT Extensions
	sigAlg     []byte // AlgorithmIdentifier, in the TBS and outside it
	newHash    func() hash.Hash
	opts       crypto.SignerOpts
	verify     func(digest, sig []byte) bool
}

// Signature algorithm identifiers (RFC 5758 §3.2, RFC 4055 §5, GM/T 0006).
var (
	oidSM2WithSM3      = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 501}
	oidSM2Sign         = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301, 1}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}

	oidExtAKI          = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtCRLNumber    = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidExtDeltaCRL     = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidExtIDP          = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidExtFreshestCRL  = asn1.ObjectIdentifier{2, 5, 29, 46}
	oidExtReasonCode   = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidExtInvalidity   = asn1.ObjectIdentifier{2, 5, 29, 24}
	maxNumber          = new(big.Int).Lsh(big.NewInt(1), 159) // BR §7.2.2: cRLNumber < 2^159
	maxSerialBits      = 20*8 - 1                             // RFC 5280 §4.1.2.2: ≤ 20 octets, positive
	earliest, latest   = time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	errEntryOutOfOrder = errors.New("serials not strictly increasing (duplicate or unsorted)")
)

// prepare validates t against the profile and encodes the fixed parts.
func prepare(t Template, signer crypto.Signer) (*prepared, error) {
	if err := CheckIssuer(t.Issuer); err != nil {
		return nil, err
	}
	if !validNumber(t.Number) {
		return nil, fmt.Errorf("%w: CRL number %v outside 1..2^159-1", ErrInvalid, t.Number)
	}
	this, next := t.ThisUpdate.UTC().Truncate(time.Second), t.NextUpdate.UTC().Truncate(time.Second)
	switch {
	case this.Before(earliest) || next.After(latest):
		return nil, fmt.Errorf("%w: thisUpdate %v or nextUpdate %v outside 1950..9999", ErrInvalid, this, next)
	case !next.After(this):
		return nil, fmt.Errorf("%w: nextUpdate %v not after thisUpdate %v", ErrInvalid, next, this)
	case next.Sub(this) > maxValidity(t.Offline):
		return nil, fmt.Errorf("%w: nextUpdate %v more than %v after thisUpdate %v", ErrInvalid, next, maxValidity(t.Offline), this)
	}
	if t.DeltaBase != nil {
		if !validNumber(t.DeltaBase) || t.DeltaBase.Cmp(t.Number) >= 0 {
			return nil, fmt.Errorf("%w: delta base %v must be ≥ 1 and below the CRL number %v", ErrInvalid, t.DeltaBase, t.Number)
		}
		if len(t.FreshestCRL) > 0 {
			return nil, fmt.Errorf("%w: freshestCRL must not appear in a delta CRL (RFC 5280 §5.2.6)", ErrInvalid)
		}
	}
	if t.IDP != nil {
		if t.IDP.OnlyUser && t.IDP.OnlyCA {
			return nil, fmt.Errorf("%w: IDP with both onlyContainsUserCerts and onlyContainsCACerts (RFC 5280 §5.2.5)", ErrInvalid)
		}
		if len(t.IDP.FullName) == 0 && !t.IDP.OnlyUser && !t.IDP.OnlyCA {
			return nil, fmt.Errorf("%w: empty IDP (RFC 5280 §5.2.5)", ErrInvalid)
		}
		if err := checkURIs(t.IDP.FullName); err != nil {
			return nil, err
		}
	}
	if err := checkURIs(t.FreshestCRL); err != nil {
		return nil, err
	}

	p := &prepared{thisUpdate: this}
	if err := p.algorithm(t.Issuer, signer); err != nil {
		return nil, err
	}

	p.prefix = []byte{tagInteger, 1, 1} // version v2 (RFC 5280 §5.1.2.1)
	p.prefix = append(p.prefix, p.sigAlg...)
	p.prefix = append(p.prefix, t.Issuer.RawSubject...) // byte-identical (RFC 5280 §5.1.2.3)
	p.prefix = appendTime(p.prefix, this)
	p.prefix = appendTime(p.prefix, next)

	var b cryptobyte.Builder
	b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			// RFC 5280 §5.2.1: AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] ... }
			addExtension(b, oidExtAKI, false, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddBytes(t.Issuer.SubjectKeyId)
					})
				})
			})
			// RFC 5280 §5.2.3: non-critical.
			addExtension(b, oidExtCRLNumber, false, func(b *cryptobyte.Builder) {
				b.AddASN1BigInt(t.Number)
			})
			if t.DeltaBase != nil { // RFC 5280 §5.2.4: critical
				addExtension(b, oidExtDeltaCRL, true, func(b *cryptobyte.Builder) {
					b.AddASN1BigInt(t.DeltaBase)
				})
			}
			if t.IDP != nil { // RFC 5280 §5.2.5: critical
				addExtension(b, oidExtIDP, true, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						if len(t.IDP.FullName) > 0 {
							addDistributionPointName(b, t.IDP.FullName)
						}
						if t.IDP.OnlyUser { // [1] IMPLICIT BOOLEAN, DEFAULT FALSE: only TRUE is written
							b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(0xff) })
						}
						if t.IDP.OnlyCA {
							b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(0xff) })
						}
					})
				})
			}
			if len(t.FreshestCRL) > 0 { // RFC 5280 §5.2.6: CRLDistributionPoints syntax, non-critical
				addExtension(b, oidExtFreshestCRL, false, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							addDistributionPointName(b, t.FreshestCRL)
						})
					})
				})
			}
		})
	})
	exts, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("crl: encode extensions: %w", err)
	}
	p.exts = exts
	return p, nil
}

// addExtension adds Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE,
// extnValue OCTET STRING } (RFC 5280 §4.1); DER omits critical when false.
func addExtension(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, critical bool, value cryptobyte.BuilderContinuation) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(cbasn1.OCTET_STRING, value)
	})
}

// addDistributionPointName adds distributionPoint [0] { fullName [0]
// GeneralNames } with each URI as uniformResourceIdentifier [6] IA5String
// (RFC 5280 §4.2.1.13; a CHOICE inside a tag is tagged explicitly).
func addDistributionPointName(b *cryptobyte.Builder, uris []string) {
	b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			for _, u := range uris {
				b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddBytes([]byte(u))
				})
			}
		})
	})
}

// maxValidity is the bound on nextUpdate - thisUpdate of a CRL.
func maxValidity(offline bool) time.Duration {
	if offline {
		return MaxOfflineValidity
	}
	return MaxValidity
}

func validNumber(n *big.Int) bool { return n != nil && n.Sign() > 0 && n.Cmp(maxNumber) < 0 }

// CheckIssuer refuses issuers whose CRLs relying parties would reject:
// RFC 5280 §4.2.1.3 (cRLSign), §4.2.1.9 (CA), §5.2.1 (AKI needs the SKI).
// Build runs it; a CA certificate the platform is to run is checked with
// it before it is accepted (ceremony.CheckCA).
func CheckIssuer(c *smx509.Certificate) error {
	switch {
	case c == nil:
		return fmt.Errorf("%w: no issuer certificate", ErrInvalid)
	case len(c.RawSubject) == 0:
		return fmt.Errorf("%w: issuer certificate has no raw subject", ErrInvalid)
	case !c.BasicConstraintsValid || !c.IsCA:
		return fmt.Errorf("%w: issuer %q is not a CA certificate", ErrInvalid, c.Subject)
	case c.KeyUsage != 0 && c.KeyUsage&smx509.KeyUsageCRLSign == 0:
		return fmt.Errorf("%w: issuer %q lacks the cRLSign key usage", ErrInvalid, c.Subject)
	case len(c.SubjectKeyId) == 0:
		return fmt.Errorf("%w: issuer %q has no subjectKeyIdentifier for the CRL's AKI", ErrInvalid, c.Subject)
	}
	return nil
}

// checkURIs requires absolute URIs in IA5 (ASCII) for GeneralName
// uniformResourceIdentifier (RFC 5280 §4.2.1.6).
func checkURIs(uris []string) error {
	for _, s := range uris {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x21 || s[i] > 0x7e {
				return fmt.Errorf("%w: URI %q is not printable ASCII (IA5String)", ErrInvalid, s)
			}
		}
		if u, err := url.Parse(s); err != nil || u.Scheme == "" {
			return fmt.Errorf("%w: %q is not an absolute URI", ErrInvalid, s)
		}
	}
	return nil
}

// algorithm picks the signature algorithm from the signer's key, which must
// be the issuer's: a CRL signed by another key verifies nowhere.
func (p *prepared) algorithm(issuer *smx509.Certificate, signer crypto.Signer) error {
	pub := signer.Public()
	eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !eq.Equal(issuer.PublicKey) {
		return fmt.Errorf("%w: signer key is not the public key of issuer %q", ErrInvalid, issuer.Subject)
	}
	var (
		oid     asn1.ObjectIdentifier
		rsaNull bool
	)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case sm2.P256():
			// GB/T 32918.2 §6.1: e = SM3(Z ‖ M). Build hashes Z ‖ TBS itself
			// while streaming, so the signer receives e and options without
			// forceGMSign (gmsm's and hsm.SM2Digest's contract: the input is
			// the digest, not the message).
			oid = oidSM2WithSM3
			p.newHash = func() hash.Hash {
				h, err := sm2.NewHashWithUserID(k, nil) // nil: the default ID 1234567812345678
				if err != nil {
					panic(err) // the key was checked on the curve above
				}
				return h
			}
			p.opts = crypto.Hash(0)
			p.verify = func(e, sig []byte) bool { return sm2.VerifyASN1(k, e, sig) }
		case elliptic.P256():
			oid, p.newHash, p.opts = oidECDSAWithSHA256, sha256.New, crypto.SHA256
			p.verify = func(d, sig []byte) bool { return ecdsa.VerifyASN1(k, d, sig) }
		case elliptic.P384():
			oid, p.newHash, p.opts = oidECDSAWithSHA384, sha512.New384, crypto.SHA384
			p.verify = func(d, sig []byte) bool { return ecdsa.VerifyASN1(k, d, sig) }
		default:
			return fmt.Errorf("%w: unsupported curve %s", ErrInvalid, k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("%w: RSA key of %d bits", ErrInvalid, k.N.BitLen())
		}
		oid, rsaNull, p.newHash, p.opts = oidSHA256WithRSA, true, sha256.New, crypto.SHA256
		p.verify = func(d, sig []byte) bool { return rsa.VerifyPKCS1v15(k, crypto.SHA256, d, sig) == nil }
	default:
		return fmt.Errorf("%w: unsupported key type %T", ErrInvalid, pub)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if rsaNull { // RFC 4055 §5: NULL parameters for RSA; absent for ECDSA (RFC 5758 §3.2) and SM2
			b.AddASN1NULL()
		}
	})
	p.sigAlg = b.BytesOrPanic()
	return nil
}

// builder runs the passes over the entries.
type builder struct {
	ctx        context.Context
	entries    iter.Seq2[Entry, error]
	count      int64
	thisUpdate time.Time
	prev       big.Int
	buf        []byte
}

// flushAt is the size of the buffer handed to the hash or writer at once. An
// encoded entry is at most 56 bytes.
const flushAt = 32 << 10

// pass encodes every entry, checking it, and writes the encodings to dst (nil
// only measures). It returns the number of bytes of entries.
func (b *builder) pass(dst io.Writer) (int64, error) {
	if b.buf == nil {
		b.buf = make([]byte, 0, flushAt+64)
	}
	b.buf = b.buf[:0]
	b.prev.SetInt64(0)
	var total, n int64
	for e, err := range b.entries {
		if err != nil {
			return 0, fmt.Errorf("entry %d: %w", n, err)
		}
		if n&1023 == 0 {
			if err := b.ctx.Err(); err != nil {
				return 0, err
			}
		}
		if n == b.count {
			return 0, fmt.Errorf("%w: more than the %d entries announced", ErrInconsistent, b.count)
		}
		if err := b.check(&e); err != nil {
			return 0, fmt.Errorf("%w: entry %d: %w", ErrInvalid, n, err)
		}
		before := len(b.buf)
		b.buf = appendEntry(b.buf, &e)
		total += int64(len(b.buf) - before)
		n++
		if len(b.buf) >= flushAt {
			if dst != nil {
				dst.Write(b.buf)
			}
			b.buf = b.buf[:0]
		}
	}
	if n != b.count {
		return 0, fmt.Errorf("%w: %d entries announced, %d yielded", ErrInconsistent, b.count, n)
	}
	if dst != nil && len(b.buf) > 0 {
		dst.Write(b.buf)
	}
	return total, nil
}

// check validates one entry against the profile and the previous serial.
func (b *builder) check(e *Entry) error {
	switch {
	case e.Serial == nil || e.Serial.Sign() <= 0:
		return fmt.Errorf("serial %v is not positive", e.Serial)
	case e.Serial.BitLen() > maxSerialBits:
		return fmt.Errorf("serial %x is longer than 20 octets", e.Serial)
	case e.Serial.Cmp(&b.prev) <= 0:
		return fmt.Errorf("serial %x after %x: %w", e.Serial, &b.prev, errEntryOutOfOrder)
	}
	at := e.RevokedAt.UTC().Truncate(time.Second)
	if at.Before(earliest) || at.After(b.thisUpdate) {
		return fmt.Errorf("serial %x: revocation time %v outside 1950..thisUpdate %v", e.Serial, at, b.thisUpdate)
	}
	switch e.Reason {
	case -1, ReasonUnspecified, ReasonKeyCompromise, ReasonCACompromise, ReasonAffiliationChanged,
		ReasonSuperseded, ReasonCessationOfOperation, ReasonPrivilegeWithdrawn:
	default:
		return fmt.Errorf("serial %x: reason %d not allowed (certificateHold, removeFromCRL, aACompromise and unassigned values are refused)", e.Serial, e.Reason)
	}
	b.prev.Set(e.Serial)
	return nil
}

// reasonExt is crlEntryExtensions with one non-critical reasonCode
// (RFC 5280 §5.3.1) whose ENUMERATED value is appended after it.
var reasonExt = []byte{
	tagSequence, 12, // Extensions
	tagSequence, 10, // Extension
	0x06, 3, 0x55, 0x1d, 0x15, // id-ce-cRLReasons 2.5.29.21
	0x04, 3, // extnValue OCTET STRING
	0x0a, 1, // ENUMERATED, value follows
}

// appendEntry appends SEQUENCE { userCertificate, revocationDate,
// crlEntryExtensions OPTIONAL } (RFC 5280 §5.1). Every part is shorter than
// 128 bytes, so each length is one octet.
func appendEntry(b []byte, e *Entry) []byte {
	at := e.RevokedAt.UTC().Truncate(time.Second)
	n := 2 + der.IntContentLen(e.Serial) + timeLen(at)
	reason := e.Reason > ReasonUnspecified
	if reason {
		n += len(reasonExt) + 1
	}
	b = append(b, tagSequence, byte(n))
	b = der.AppendNonNegativeInt(b, e.Serial)
	b = appendTime(b, at)
	if reason {
		b = append(b, reasonExt...)
		b = append(b, byte(e.Reason))
	}
	return b
}
