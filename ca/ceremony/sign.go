package ceremony

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/ca/crl"
	"github.com/govtrust/govtrust/ca/lint"
	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/hsm"
)

// caKeyUsage is what every CA certificate of the platform carries
// (RFC 5280 §4.2.1.3: keyCertSign and cRLSign; digitalSignature for OCSP
// responses the CA signs itself).
const caKeyUsage = smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign | smx509.KeyUsageDigitalSignature

// CSR makes the PKCS #10 request of a sub ceremony, signed by the new key.
func CSR(f *File, signer crypto.Signer) ([]byte, error) {
	if f.Kind != Sub {
		return nil, fmt.Errorf("a request is made in a sub ceremony, not %s", f.Kind)
	}
	if err := checkAlgorithm(f.Algorithm, signer.Public()); err != nil {
		return nil, err
	}
	subj, err := f.Subject.DER()
	if err != nil {
		return nil, err
	}
	der, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{RawSubject: subj}, signer)
	if err != nil {
		return nil, fmt.Errorf("create request: %w", err)
	}
	return der, nil
}

// SelfSign makes the certificate of a root ceremony.
func SelfSign(f *File, signer crypto.Signer, now time.Time) ([]byte, error) {
	if f.Kind != Root {
		return nil, fmt.Errorf("self-signing is a root ceremony, not %s", f.Kind)
	}
	pub := signer.Public()
	if err := checkAlgorithm(f.Algorithm, pub); err != nil {
		return nil, err
	}
	subj, err := f.Subject.DER()
	if err != nil {
		return nil, err
	}
	tmpl, err := f.template(now, subj, pub)
	if err != nil {
		return nil, err
	}
	// The issuer of a self-signed certificate is itself: sign with the
	// template as parent (AKI = SKI, RFC 5280 §4.2.1.1 allows omitting it,
	// Go writes it; the name is the same bytes).
	tmpl.RawIssuer = subj
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("self-sign: %w", err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse root: %w", err)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, fmt.Errorf("root does not verify with its own key: %w", err)
	}
	if errs := lint.Errors(lint.Check(der, cert, f.expect())); len(errs) > 0 {
		return nil, fmt.Errorf("lint: %v", errs)
	}
	return der, nil
}

// SignCSR makes a sub-CA certificate from its request: the request must be
// the one the file pins (request_sha256), its subject the ceremony's (byte
// for byte), its key of the ceremony's algorithm, and its self-signature
// must verify (proof of possession).
func SignCSR(f *File, csrDER []byte, issuer *smx509.Certificate, signer crypto.Signer, now time.Time) ([]byte, error) {
	if f.Kind != Sub {
		return nil, fmt.Errorf("signing a request is a sub ceremony, not %s", f.Kind)
	}
	if err := CheckPin("request_sha256", f.RequestSHA256, csrDER); err != nil {
		return nil, err
	}
	csr, err := smx509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("sub-CA request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("sub-CA request signature: %w", err)
	}
	subj, err := f.Subject.DER()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(csr.RawSubject, subj) {
		return nil, fmt.Errorf("the request's subject %q is not the ceremony's subject", csrSubject(csr))
	}
	if err := checkAlgorithm(f.Algorithm, csr.PublicKey); err != nil {
		return nil, fmt.Errorf("request key: %w", err)
	}
	return f.signUnder(now, subj, csr.PublicKey, nil, nil, issuer, signer)
}

// CrossSign certifies the subject and key of another root (subject) under
// issuer: the cross-certificate of RFC 5280 §3.2, with the subject's name
// and subjectKeyIdentifier unchanged so paths through either root meet: the
// certificates the subject issued name that identifier in their
// authorityKeyIdentifier, and path builders (OpenSSL's X509_check_akid)
// pass over an issuer whose identifier differs. A root made by another tool
// may use another method than RFC 7093's (SHA-1, RFC 5280 §4.2.1.2), so
// the identifier is copied, never recomputed.
//
// Relying parties that trust the issuer reach the subject's certificates
// through the cross-certificate, never through the subject's own
// certificate, so the cross-certificate carries the limits the subject
// root put on itself: a path_length above the subject's pathLenConstraint
// is refused, and the subject's nameConstraints, policyConstraints,
// inhibitAnyPolicy and extKeyUsage are copied into it (Constraints).
func CrossSign(f *File, subject, issuer *smx509.Certificate, signer crypto.Signer, now time.Time) ([]byte, error) {
	if f.Kind != Cross {
		return nil, fmt.Errorf("cross-signing is a cross ceremony, not %s", f.Kind)
	}
	if err := CheckPin("subject_certificate_sha256", f.SubjectCertificateSHA256, subject.Raw); err != nil {
		return nil, err
	}
	if err := subject.CheckSignatureFrom(subject); err != nil || !subject.IsCA {
		return nil, errors.New("subject_certificate is not a self-signed CA certificate")
	}
	if err := checkAlgorithm(f.Algorithm, subject.PublicKey); err != nil {
		return nil, fmt.Errorf("subject_certificate key: %w", err)
	}
	if f.Subject != (Subject{}) {
		subj, err := f.Subject.DER()
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(subj, subject.RawSubject) {
			return nil, errors.New("subject: the ceremony's subject is not subject_certificate's; leave it out or copy it exactly")
		}
	}
	if limit, ok := PathLen(subject); ok && *f.PathLength > limit {
		return nil, fmt.Errorf("path_length %d: subject_certificate allows %d CA certificate(s) below it (pathLenConstraint %d); a cross-certificate may not widen the limits of the root it certifies",
			*f.PathLength, limit, limit)
	}
	return f.signUnder(now, subject.RawSubject, subject.PublicKey, subject.SubjectKeyId, Constraints(subject), issuer, signer)
}

// Extensions that constrain the certificates below a CA (RFC 5280 §4.2.1).
var (
	oidNameConstraints   = asn1.ObjectIdentifier{2, 5, 29, 30}
	oidPolicyConstraints = asn1.ObjectIdentifier{2, 5, 29, 36}
	oidInhibitAnyPolicy  = asn1.ObjectIdentifier{2, 5, 29, 54}
	oidExtKeyUsage       = asn1.ObjectIdentifier{2, 5, 29, 37}
)

// Constraints returns copies of the extensions of CA certificate c that
// limit the certificates below it besides basicConstraints:
// nameConstraints, policyConstraints and inhibitAnyPolicy, marked critical
// as RFC 5280 §4.2.1.10, §4.2.1.11 and §4.2.1.14 require of a conforming
// CA whatever c says, and extKeyUsage as c has it. A certificate for c's
// name that must limit what is below it as c does carries them: a
// cross-certificate (CrossSign), a new generation of a CA (the ca
// package's rollover).
func Constraints(c *smx509.Certificate) []pkix.Extension {
	var out []pkix.Extension
	for _, e := range c.Extensions {
		switch {
		case e.Id.Equal(oidNameConstraints), e.Id.Equal(oidPolicyConstraints), e.Id.Equal(oidInhibitAnyPolicy):
			out = append(out, pkix.Extension{Id: e.Id, Critical: true, Value: bytes.Clone(e.Value)})
		case e.Id.Equal(oidExtKeyUsage):
			out = append(out, pkix.Extension{Id: e.Id, Critical: e.Critical, Value: bytes.Clone(e.Value)})
		}
	}
	return out
}

// signUnder signs a CA certificate for pub under issuer, linted first; ski,
// when not empty, is its subjectKeyIdentifier (computed otherwise), and
// extra are added to the extensions the file describes.
func (f *File) signUnder(now time.Time, subj []byte, pub crypto.PublicKey, ski []byte, extra []pkix.Extension, issuer *smx509.Certificate, signer crypto.Signer) ([]byte, error) {
	if f.Issuer != nil && f.Issuer.CertificateSHA256 != "" {
		if err := CheckPin("issuer.certificate_sha256", f.Issuer.CertificateSHA256, issuer.Raw); err != nil {
			return nil, err
		}
	}
	if !samePublicKey(signer.Public(), issuer.PublicKey) {
		return nil, errors.New("issuer.key_uri is not the key of issuer.certificate")
	}
	if !issuer.IsCA || issuer.KeyUsage&smx509.KeyUsageCertSign == 0 {
		return nil, errors.New("issuer.certificate is not a CA certificate with keyCertSign")
	}
	if samePublicKey(pub, issuer.PublicKey) {
		// A second certificate for the issuer's key under another name
		// would be a CA that no CRL of the issuer's covers.
		return nil, errors.New("the key to certify is the issuer's own key: a CA certificate certifies another CA's key")
	}
	tmpl, err := f.template(now, subj, pub)
	if err != nil {
		return nil, err
	}
	if len(ski) > 0 {
		tmpl.SubjectKeyId = bytes.Clone(ski)
	}
	tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, extra...)
	// Go omits the AKI when issuer and subject names are equal (a renewed
	// or same-named cross-certified root); RFC 5280 §4.2.1.1 wants it in
	// every certificate not self-signed.
	tmpl.AuthorityKeyId = issuer.SubjectKeyId
	// RFC 5280 §6.1.4 (l): a path length the issuer does not allow makes the
	// new certificate unusable; refuse it here rather than at validation.
	if issuer.BasicConstraintsValid && (issuer.MaxPathLen > 0 || issuer.MaxPathLenZero) && *f.PathLength >= issuer.MaxPathLen {
		return nil, fmt.Errorf("path_length %d: the issuer allows at most %d below it", *f.PathLength, issuer.MaxPathLen-1)
	}
	if tmpl.NotAfter.After(issuer.NotAfter) {
		return nil, fmt.Errorf("validity ends %s, after the issuer's certificate (%s)", tmpl.NotAfter.Format(time.RFC3339), issuer.NotAfter.UTC().Format(time.RFC3339))
	}
	linted, err := lint.Precheck(tmpl, issuer, pub, f.expect())
	if err != nil {
		return nil, err
	}
	if errs := lint.Errors(linted.Findings); len(errs) > 0 {
		return nil, fmt.Errorf("pre-issuance lint: %v", errs)
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, issuer, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if err := linted.SameTBS(der); err != nil {
		return nil, err
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse signed certificate: %w", err)
	}
	if err := cert.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("signed certificate does not verify under the issuer: %w", err)
	}
	return der, nil
}

// template is the CA certificate the ceremony describes, for pub.
func (f *File) template(now time.Time, subj []byte, pub crypto.PublicKey) (*smx509.Certificate, error) {
	nb, na, err := f.Validity.bounds(now)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	spki, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	ski, err := KeyID(spki)
	if err != nil {
		return nil, err
	}
	t := &smx509.Certificate{
		SerialNumber:          serial,
		RawSubject:            subj,
		NotBefore:             nb,
		NotAfter:              na,
		KeyUsage:              caKeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            *f.PathLength,
		MaxPathLenZero:        *f.PathLength == 0,
		SubjectKeyId:          ski,
		CRLDistributionPoints: f.CRLURLs,
		IssuingCertificateURL: f.CAIssuersURLs,
		OCSPServer:            f.OCSPURLs,
	}
	if len(f.Policies) > 0 {
		ext, err := policiesExtension(f.policyOIDs())
		if err != nil {
			return nil, err
		}
		t.ExtraExtensions = append(t.ExtraExtensions, ext)
	}
	return t, nil
}

// oidCertificatePolicies is id-ce-certificatePolicies (RFC 5280 §4.2.1.4).
var oidCertificatePolicies = asn1.ObjectIdentifier{2, 5, 29, 32}

// policiesExtension encodes certificatePolicies with one PolicyInformation
// per OID and no qualifiers. It is written by hand, as ca/profile does:
// smx509.CreateCertificate, like crypto/x509 since Go 1.24
// (x509usepolicies=1), writes only the Policies field and silently drops
// PolicyIdentifiers, so the encoding must not depend on which field the
// library reads.
func policiesExtension(oids []asn1.ObjectIdentifier) (pkix.Extension, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, id := range oids {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(id) })
		}
	})
	v, err := b.Bytes()
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("encode certificatePolicies: %w", err)
	}
	return pkix.Extension{Id: oidCertificatePolicies, Value: v}, nil
}

// policyOIDs are the file's certificate_policies (validated), never nil:
// the lint expects exactly these, and none when the file gives none.
func (f *File) policyOIDs() []asn1.ObjectIdentifier {
	out := make([]asn1.ObjectIdentifier, 0, len(f.Policies))
	for _, p := range f.Policies {
		oid, _ := parseOID(p) // validated
		out = append(out, oid)
	}
	return out
}

// expect is what the lint requires of the ceremony's certificate: a CA
// with the platform's key usages, the file's path length, exactly its
// policies and, when it gives them, exactly its URLs.
func (f *File) expect() lint.Expect {
	pathLen := *f.PathLength
	return lint.Expect{Purpose: lint.PurposeCA, KeyUsage: caKeyUsage, PathLen: &pathLen, Policies: f.policyOIDs(),
		CRLDistributionPoints: f.CRLURLs, OCSPServers: f.OCSPURLs, IssuingCertificateURLs: f.CAIssuersURLs}
}

// newSerial is 0x01 and 16 random bytes, like every serial of the platform
// (ca package comment; RFC 5280 §4.1.2.2).
func newSerial() (*big.Int, error) {
	b := make([]byte, 17)
	if _, err := rand.Read(b[1:]); err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	b[0] = 0x01
	return new(big.Int).SetBytes(b), nil
}

// KeyID is the subjectKeyIdentifier of RFC 7093 §2 method 1 (the leftmost
// 160 bits of the SHA-256 of the subjectPublicKey), as the ca package uses.
func KeyID(spki []byte) ([]byte, error) {
	in := cryptobyte.String(spki)
	var seq cryptobyte.String
	var bits []byte
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.SkipASN1(cbasn1.SEQUENCE) || !seq.ReadASN1BitStringAsBytes(&bits) {
		return nil, errors.New("subjectKeyIdentifier: malformed SubjectPublicKeyInfo")
	}
	sum := sha256.Sum256(bits)
	return sum[:20], nil
}

// Algorithm returns the key algorithm of a CA public key: sm2 or
// ecdsa-p256 (the algorithms of the platform's hierarchies).
func Algorithm(pub crypto.PublicKey) (hsm.Algorithm, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	switch {
	case !ok:
		return "", fmt.Errorf("key type %T: want an SM2 or ECDSA P-256 key", pub)
	case k.Curve == sm2.P256():
		return hsm.SM2, nil
	case k.Curve == elliptic.P256():
		return hsm.ECDSAP256, nil
	}
	return "", fmt.Errorf("curve %s: want SM2 or P-256", k.Curve.Params().Name)
}

func checkAlgorithm(want hsm.Algorithm, pub crypto.PublicKey) error {
	got, err := Algorithm(pub)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("key is %s, the ceremony says %s", got, want)
	}
	return nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	da, err1 := smx509.MarshalPKIXPublicKey(a)
	db, err2 := smx509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(da, db)
}

func csrSubject(csr *smx509.CertificateRequest) string { return csr.Subject.String() }

// Fingerprint is the SHA-256 of a certificate's DER as colon-separated
// upper-case hex, as `openssl x509 -fingerprint -sha256` prints it.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// CheckCA checks what a node requires before it runs a CA certificate it
// did not make: the key is the certificate's, the certificate is a CA
// allowed to sign certificates and CRLs (RFC 5280 §4.2.1.3, §4.2.1.9) and
// valid at now, one the platform can operate as an issuer (the issuer
// checks of the CRL builder, crl.CheckIssuer, and of the profiles,
// profile.CheckIssuer: a subjectKeyIdentifier, RFC 5280 §4.2.1.2) whose
// key is of its issuer's family (profile.CheckKeyFamily: one algorithm per
// hierarchy, SM2 certificates signed by SM2 CAs, GM/T 0015), and chain
// (issuer first, ending in a self-signed root) verifies link by link
// with every link a CA with keyCertSign whose subjectKeyIdentifier is the
// authorityKeyIdentifier below it (when both are present) and whose
// pathLenConstraint leaves room for the CA and for the certificates it
// will issue (RFC 5280 §6.1.4 (l), (m)). The
// certificate then passes the lints a ceremony runs on the certificates it
// signs (package lint, its own and zlint's, as a CA certificate with its
// own pathLenConstraint). Last, the chain is validated as a relying party
// would, with the root as the only trust anchor.
func CheckCA(cert *smx509.Certificate, chain []*smx509.Certificate, pub crypto.PublicKey, now time.Time) error {
	if !samePublicKey(pub, cert.PublicKey) {
		return errors.New("the key is not the certificate's key")
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return errors.New("the certificate is not a CA certificate (basicConstraints cA)")
	}
	if cert.KeyUsage&smx509.KeyUsageCertSign == 0 || cert.KeyUsage&smx509.KeyUsageCRLSign == 0 {
		return errors.New("the certificate's key usage lacks keyCertSign or cRLSign")
	}
	if err := crl.CheckIssuer(cert); err != nil {
		return fmt.Errorf("the node could not sign the CA's CRLs: %w", err)
	}
	if err := profile.CheckIssuer(cert); err != nil {
		return fmt.Errorf("the node could not issue certificates from the CA: %w", err)
	}
	if len(chain) == 0 {
		return errors.New("no chain: give the issuer's certificate up to the root")
	}
	if err := profile.CheckKeyFamily(cert.PublicKey, chain[0]); err != nil {
		return fmt.Errorf("the certificate's key and its issuer's: %w", err)
	}
	child := cert
	// below counts the CA certificates under chain[i] that are not
	// self-issued, the imported one included: it will issue certificates,
	// so it is an intermediate of every path through it.
	below := 0
	for i, c := range append(chain, chain[len(chain)-1]) {
		if err := child.CheckSignatureFrom(c); err != nil {
			if i == len(chain) {
				return fmt.Errorf("the chain does not end in a self-signed root: %w", err)
			}
			return fmt.Errorf("chain link %d (%s) does not verify under %s: %w", i, child.Subject, c.Subject, err)
		}
		if !bytes.Equal(child.RawIssuer, c.RawSubject) {
			return fmt.Errorf("chain link %d: issuer name of %s is not the subject of %s", i, child.Subject, c.Subject)
		}
		if len(child.AuthorityKeyId) > 0 && len(c.SubjectKeyId) > 0 && !bytes.Equal(child.AuthorityKeyId, c.SubjectKeyId) {
			return fmt.Errorf("chain link %d: the authorityKeyIdentifier %x of %s is not the subjectKeyIdentifier %x of %s (RFC 5280 §4.2.1.1)",
				i, child.AuthorityKeyId, child.Subject, c.SubjectKeyId, c.Subject)
		}
		if !c.IsCA || c.KeyUsage&smx509.KeyUsageCertSign == 0 {
			return fmt.Errorf("chain certificate %s is not a CA with keyCertSign", c.Subject)
		}
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return fmt.Errorf("chain certificate %s is not valid now", c.Subject)
		}
		if i == len(chain) {
			break // the root's link to itself
		}
		if !bytes.Equal(child.RawSubject, child.RawIssuer) {
			below++
		}
		if limit, ok := PathLen(c); ok && below > limit {
			return fmt.Errorf("chain certificate %s allows %d CA certificate(s) below it (pathLenConstraint), the imported CA would be number %d: every certificate it issued would fail validation (RFC 5280 §6.1.4 (l))",
				c.Subject, limit, below)
		}
		child = c
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return errors.New("the certificate is not valid now")
	}
	exp := lint.Expect{Purpose: lint.PurposeCA}
	if n, ok := PathLen(cert); ok {
		exp.PathLen = &n
	}
	var errs []lint.Finding
	for _, f := range lint.Errors(lint.Check(cert.Raw, chain[0], exp)) {
		if _, waived := importWaived[f.Lint]; !waived {
			errs = append(errs, f)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("the certificate fails the lints the node holds CA certificates to: %v", errs)
	}
	roots, inter := smx509.NewCertPool(), smx509.NewCertPool()
	roots.AddCert(chain[len(chain)-1])
	for _, c := range chain[:len(chain)-1] {
		inter.AddCert(c)
	}
	if _, err := cert.Verify(smx509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("the chain does not validate: %w", err)
	}
	return nil
}

// importWaived are the lints CheckCA does not hold a certificate made
// elsewhere to, each with the reason.
var importWaived = map[string]string{
	"e_serial_low_entropy": "the serial is the issuing CA's practice, which the node cannot change and does not rely on; " +
		"the serials the node and its ceremonies make are linted when they are signed",
}

// PathLen returns the pathLenConstraint of a CA certificate, and false when
// it has none (RFC 5280 §4.2.1.9).
func PathLen(c *smx509.Certificate) (int, bool) {
	if !c.BasicConstraintsValid || c.MaxPathLen < 0 || (c.MaxPathLen == 0 && !c.MaxPathLenZero) {
		return 0, false
	}
	return c.MaxPathLen, true
}
