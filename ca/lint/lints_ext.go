package lint

import (
	"bytes"
	"encoding/asn1"
	"net"
	"net/url"
	"strings"
)

// knownExtensions are the extensions govtrust writes or a relying party is
// expected to understand. A critical extension outside this list makes
// conforming verifiers reject the certificate (RFC 5280 §4.2).
var knownExtensions = []asn1.ObjectIdentifier{
	oidExtSubjectDirectoryAttributes, oidExtSKI, oidExtKeyUsage, oidExtPrivateKeyUsagePeriod,
	oidExtSAN, oidExtIAN, oidExtBasicConstraints, oidExtNameConstraints, oidExtCRLDP,
	oidExtCertificatePolicies, oidExtPolicyMappings, oidExtAKI, oidExtPolicyConstraints,
	oidExtExtKeyUsage, oidExtFreshestCRL, oidExtInhibitAnyPolicy, oidExtAIA, oidExtSIA,
	oidExtOCSPNoCheck,
	OIDIdentityCode, OIDInsuranceNumber, OIDICRegistrationNumber, OIDOrganizationCode, OIDTaxationNumber,
}

// Key usage bits, numbered as smx509.KeyUsage.
const (
	kuDigitalSignature = 1 << iota
	kuNonRepudiation
	kuKeyEncipherment
	kuDataEncipherment
	kuKeyAgreement
	kuKeyCertSign
	kuCRLSign
	kuEncipherOnly
	kuDecipherOnly
)

// Lints of the extensions (RFC 5280 §4.2).
func init() {
	register("e_ext_duplicate", Error, "RFC 5280 §4.2",
		"a certificate must not include more than one instance of an extension",
		func(c *ctx) []string {
			seen := map[string]bool{}
			var out []string
			for _, e := range c.raw.exts {
				k := e.id.String()
				if seen[k] {
					out = append(out, "extension "+k+" appears more than once")
				}
				seen[k] = true
			}
			return out
		})

	register("e_ext_unknown_critical", Error, "RFC 5280 §4.2",
		"a critical extension the relying party does not recognise makes it reject the certificate",
		func(c *ctx) []string {
			var out []string
			for _, e := range c.raw.exts {
				if e.critical && !oidIn(e.id, knownExtensions...) {
					out = append(out, "critical extension "+e.id.String()+" is not one govtrust knows")
				}
			}
			return out
		})

	register("e_ext_malformed", Error, "RFC 5280 §4.2.1, §4.2.2",
		"every extension value must decode as its ASN.1 type",
		func(c *ctx) []string { return c.malformedExt })

	register("e_ext_critical_default_encoded", Error, "X.690 §11.5 (DER); RFC 5280 §4.1",
		"critical FALSE is the DEFAULT and must be omitted in DER",
		func(c *ctx) []string {
			var out []string
			for _, e := range c.raw.exts {
				if e.criticalPresent && !e.critical {
					out = append(out, "extension "+e.id.String()+" encodes critical FALSE")
				}
			}
			return out
		})

	register("e_aki_missing", Error, "RFC 5280 §4.2.1.1",
		"authorityKeyIdentifier must be present in all but self-signed certificates",
		func(c *ctx) []string {
			if c.selfSigned {
				return nil
			}
			if _, ok := c.raw.ext(oidExtAKI); !ok {
				return one("no authorityKeyIdentifier")
			}
			return nil
		})

	register("e_aki_critical", Error, "RFC 5280 §4.2.1.1",
		"authorityKeyIdentifier must be non-critical",
		func(c *ctx) []string {
			if e, ok := c.raw.ext(oidExtAKI); ok && e.critical {
				return one("authorityKeyIdentifier is critical")
			}
			return nil
		})

	register("e_aki_no_key_id", Error, "RFC 5280 §4.2.1.1",
		"authorityKeyIdentifier must include the keyIdentifier field",
		func(c *ctx) []string {
			if e, ok := c.raw.ext(oidExtAKI); ok {
				if id, ok := parseAKI(e.value); ok && len(id) == 0 {
					return one("authorityKeyIdentifier has no keyIdentifier")
				}
			}
			return nil
		})

	register("e_aki_mismatch", Error, "RFC 5280 §4.2.1.1",
		"the keyIdentifier must equal the issuing CA's subjectKeyIdentifier",
		func(c *ctx) []string {
			if c.selfSigned || len(c.issuer.SubjectKeyId) == 0 {
				return nil
			}
			if e, ok := c.raw.ext(oidExtAKI); ok {
				if id, ok := parseAKI(e.value); ok && len(id) > 0 && !bytes.Equal(id, c.issuer.SubjectKeyId) {
					return one("AKI % x, issuer SKI % x", id, c.issuer.SubjectKeyId)
				}
			}
			return nil
		})

	register("e_ski_missing_ca", Error, "RFC 5280 §4.2.1.2",
		"CA certificates must include subjectKeyIdentifier",
		func(c *ctx) []string {
			if _, ok := c.raw.ext(oidExtSKI); c.isCA && !ok {
				return one("CA certificate without subjectKeyIdentifier")
			}
			return nil
		})

	register("w_ski_missing_leaf", Warning, "RFC 5280 §4.2.1.2",
		"end-entity certificates should include subjectKeyIdentifier",
		func(c *ctx) []string {
			if _, ok := c.raw.ext(oidExtSKI); c.leaf() && !ok {
				return one("end-entity certificate without subjectKeyIdentifier")
			}
			return nil
		})

	register("e_ski_critical", Error, "RFC 5280 §4.2.1.2",
		"subjectKeyIdentifier must be non-critical",
		func(c *ctx) []string {
			if e, ok := c.raw.ext(oidExtSKI); ok && e.critical {
				return one("subjectKeyIdentifier is critical")
			}
			return nil
		})

	register("e_ku_missing", Error, "RFC 5280 §4.2.1.3; GM/T 0015 (key usage fixes signing vs encryption)",
		"keyUsage must be present (CA certificates by RFC 5280, every govtrust certificate by policy)",
		func(c *ctx) []string {
			if !c.hasKU {
				return one("no keyUsage")
			}
			return nil
		})

	register("e_ku_not_critical", Error, "RFC 5280 §4.2.1.3 (SHOULD); ACCEPTANCE A-10",
		"keyUsage must be critical",
		func(c *ctx) []string {
			if e, ok := c.raw.ext(oidExtKeyUsage); ok && !e.critical {
				return one("keyUsage is not critical")
			}
			return nil
		})

	register("e_ku_no_bits", Error, "RFC 5280 §4.2.1.3",
		"when keyUsage is present at least one bit must be set",
		func(c *ctx) []string {
			if c.kuOK && c.ku == 0 {
				return one("keyUsage has no bit set")
			}
			return nil
		})

	register("e_ku_cert_sign_on_leaf", Error, "RFC 5280 §4.2.1.3, §4.2.1.9",
		"keyCertSign may be asserted only when basicConstraints cA is TRUE",
		func(c *ctx) []string {
			if c.kuOK && c.ku&kuKeyCertSign != 0 && !c.isCA {
				return one("keyCertSign without cA TRUE")
			}
			return nil
		})

	register("w_ku_crl_sign_on_leaf", Warning, "RFC 5280 §4.2.1.3",
		"cRLSign outside a CA certificate makes an indirect CRL issuer, which govtrust does not run",
		func(c *ctx) []string {
			if c.kuOK && c.ku&kuCRLSign != 0 && !c.isCA {
				return one("cRLSign on an end-entity certificate")
			}
			return nil
		})

	register("e_ca_without_cert_sign", Error, "RFC 5280 §4.2.1.9",
		"if cA is TRUE, keyUsage must be present with keyCertSign",
		func(c *ctx) []string {
			if c.isCA && (!c.kuOK || c.ku&kuKeyCertSign == 0) {
				return one("cA TRUE without keyCertSign")
			}
			return nil
		})

	register("e_bc_not_critical_ca", Error, "RFC 5280 §4.2.1.9",
		"basicConstraints must be critical in CA certificates",
		func(c *ctx) []string {
			if e, ok := c.raw.ext(oidExtBasicConstraints); ok && c.isCA && !e.critical {
				return one("basicConstraints with cA TRUE is not critical")
			}
			return nil
		})

	register("e_pathlen_not_ca", Error, "RFC 5280 §4.2.1.9",
		"pathLenConstraint is meaningful only when cA is TRUE and keyCertSign is set",
		func(c *ctx) []string {
			if c.bcOK && c.bc.hasPathLen && (!c.bc.ca || !c.kuOK || c.ku&kuKeyCertSign == 0) {
				return one("pathLenConstraint %d without cA TRUE and keyCertSign", c.bc.pathLen)
			}
			return nil
		})

	register("e_nc_not_critical", Error, "RFC 5280 §4.2.1.10",
		"conforming CAs must mark nameConstraints critical",
		func(c *ctx) []string {
			if e, ok := c.raw.ext(oidExtNameConstraints); ok && !e.critical {
				return one("nameConstraints is not critical")
			}
			return nil
		})

	register("e_nc_on_leaf", Error, "RFC 5280 §4.2.1.10",
		"nameConstraints must be used only in a CA certificate",
		func(c *ctx) []string {
			if _, ok := c.raw.ext(oidExtNameConstraints); ok && !c.isCA {
				return one("nameConstraints on an end-entity certificate")
			}
			return nil
		})

	register("e_name_constraints_violated", Error, "RFC 5280 §4.2.1.10, §6.1.3 (b), (c)",
		"the subject and subjectAltName must lie within the issuing CA's permitted subtrees and outside its excluded ones",
		func(c *ctx) []string {
			if c.issuer == nil || (c.hasSAN && !c.sanOK) {
				return nil // self-signed; a malformed SAN is its own finding
			}
			names := Names{Subject: c.raw.subject}
			for _, n := range c.san {
				switch n.tag {
				case gnDNS:
					names.DNS = append(names.DNS, string(n.value))
				case gnIP:
					names.IP = append(names.IP, net.IP(n.value))
				case gnEmail:
					names.Email = append(names.Email, string(n.value))
				case gnURI:
					names.URI = append(names.URI, string(n.value))
				}
			}
			out, err := CheckNameConstraints(c.issuer, names)
			if err != nil {
				return one("%v", err)
			}
			return out
		})

	register("w_eku_any", Warning, "RFC 5280 §4.2.1.12; BR §7.1.2.7.10",
		"anyExtendedKeyUsage lets the key be used for any purpose",
		func(c *ctx) []string {
			if c.hasEKUOID(oidEKUAny) {
				return one("anyExtendedKeyUsage present")
			}
			return nil
		})

	register("e_san_missing_empty_subject", Error, "RFC 5280 §4.1.2.6",
		"when the subject is empty the identity must be in subjectAltName",
		func(c *ctx) []string {
			if c.subjectErr == nil && len(c.subject) == 0 && !c.hasSAN {
				return one("empty subject and no subjectAltName")
			}
			return nil
		})

	register("e_san_not_critical_empty_subject", Error, "RFC 5280 §4.2.1.6",
		"subjectAltName must be critical when the subject is empty",
		func(c *ctx) []string {
			if e, ok := c.raw.ext(oidExtSAN); ok && c.subjectErr == nil && len(c.subject) == 0 && !e.critical {
				return one("empty subject and a non-critical subjectAltName")
			}
			return nil
		})

	register("w_san_critical_with_subject", Warning, "RFC 5280 §4.2.1.6",
		"subjectAltName should be non-critical when the subject is not empty",
		func(c *ctx) []string {
			if e, ok := c.raw.ext(oidExtSAN); ok && len(c.subject) > 0 && e.critical {
				return one("critical subjectAltName with a non-empty subject")
			}
			return nil
		})

	register("e_san_empty", Error, "RFC 5280 §4.2.1.6",
		"subjectAltName must contain at least one entry",
		func(c *ctx) []string {
			if c.sanOK && len(c.san) == 0 {
				return one("subjectAltName with no names")
			}
			return nil
		})

	register("e_san_dns_invalid", Error, "RFC 5280 §4.2.1.6; RFC 1034 §3.5; RFC 6125 §6.4.3; RFC 5891 §5.4",
		"dNSName must be LDH labels (no underscore), wildcard only as the whole leftmost label, an xn-- label a valid IDNA A-label",
		func(c *ctx) []string {
			var out []string
			for _, n := range c.san {
				if n.tag == 2 {
					if err := ValidDNSName(string(n.value), true); err != nil {
						out = append(out, err.Error())
					}
				}
			}
			return out
		})

	register("w_san_dns_internal", Warning, "BR §7.1.2.7.12 (Internal Names)",
		"a single-label or reserved-suffix DNS name cannot be validated publicly",
		func(c *ctx) []string {
			if c.exp.Purpose == PurposeTLSPrivate {
				return nil // reached by the names of its own network
			}
			var out []string
			for _, n := range c.san {
				if n.tag == 2 && ValidDNSName(string(n.value), true) == nil && IsInternalName(string(n.value)) {
					out = append(out, "internal name "+strconvQuote(string(n.value)))
				}
			}
			return out
		})

	register("e_san_ip_length", Error, "RFC 5280 §4.2.1.6",
		"iPAddress must be 4 (IPv4) or 16 (IPv6) octets",
		func(c *ctx) []string {
			var out []string
			for _, n := range c.san {
				if n.tag == 7 && len(n.value) != 4 && len(n.value) != 16 {
					out = append(out, "iPAddress of "+itoa(len(n.value))+" octets")
				}
			}
			return out
		})

	register("e_san_email_invalid", Error, "RFC 5280 §4.2.1.6; RFC 5321 §4.1.2",
		"rfc822Name must be a Mailbox: Dot-string local part @ a DNS domain",
		func(c *ctx) []string {
			var out []string
			for _, n := range c.san {
				if n.tag != 1 {
					continue
				}
				if err := ValidMailbox(string(n.value)); err != nil {
					out = append(out, "rfc822Name "+strconvQuote(string(n.value))+" is not a mailbox: "+err.Error())
				}
			}
			return out
		})

	register("e_san_uri_invalid", Error, "RFC 5280 §4.2.1.6",
		"uniformResourceIdentifier must be an absolute ASCII URI with a scheme",
		func(c *ctx) []string {
			var out []string
			for _, n := range c.san {
				if n.tag != 6 {
					continue
				}
				u, err := url.Parse(string(n.value))
				if err != nil || u.Scheme == "" || !isIA5(string(n.value)) || strings.ContainsAny(string(n.value), " \x00") {
					out = append(out, "URI "+strconvQuote(string(n.value))+" is not an absolute URI")
				}
			}
			return out
		})

	register("e_url_invalid", Error, "RFC 5280 §4.2.1.13, §4.2.2.1",
		"CRL distribution point and AIA URLs must be well-formed http or ldap URLs",
		func(c *ctx) []string {
			var out []string
			for _, u := range c.urls() {
				if err := CheckURL(u); err != nil {
					out = append(out, err.Error())
				}
			}
			for _, a := range c.aia {
				if !a.isURI {
					out = append(out, "an AIA accessLocation is not a URI")
				}
			}
			return out
		})

	register("w_url_https", Warning, "RFC 5280 §4.2.1.13; RFC 6960 Appendix A.1; BR §7.1.2.7.7",
		"revocation and issuer URLs should be plain http: fetching https needs revocation data of its own",
		func(c *ctx) []string {
			var out []string
			for _, u := range c.urls() {
				if strings.HasPrefix(u, "https:") {
					out = append(out, "https URL "+u)
				}
			}
			return out
		})

	register("e_crldp_critical", Error, "RFC 5280 §4.2.1.13 (SHOULD be non-critical); govtrust policy",
		"cRLDistributionPoints must be non-critical",
		func(c *ctx) []string {
			if e, ok := c.raw.ext(oidExtCRLDP); ok && e.critical {
				return one("cRLDistributionPoints is critical")
			}
			return nil
		})

	register("e_aia_critical", Error, "RFC 5280 §4.2.2.1",
		"authorityInfoAccess must be non-critical",
		func(c *ctx) []string {
			if e, ok := c.raw.ext(oidExtAIA); ok && e.critical {
				return one("authorityInfoAccess is critical")
			}
			return nil
		})

	register("e_ocsp_signer_nocheck_missing", Error, "RFC 6960 §4.2.2.2.1; govtrust policy",
		"an OCSP responder certificate must carry id-pkix-ocsp-nocheck so clients do not recurse",
		func(c *ctx) []string {
			if _, ok := c.raw.ext(oidExtOCSPNoCheck); c.hasEKUOID(oidEKUOCSPSigning) && !ok {
				return one("id-kp-OCSPSigning without id-pkix-ocsp-nocheck")
			}
			return nil
		})

	register("e_ocsp_nocheck_without_ocsp_eku", Error, "RFC 6960 §4.2.2.2.1",
		"id-pkix-ocsp-nocheck on a certificate that is not an OCSP responder exempts it from revocation checking",
		func(c *ctx) []string {
			if _, ok := c.raw.ext(oidExtOCSPNoCheck); ok && !c.hasEKUOID(oidEKUOCSPSigning) {
				return one("id-pkix-ocsp-nocheck without id-kp-OCSPSigning")
			}
			return nil
		})

	register("e_ocsp_signing_outside_ocsp_signer", Error, "RFC 6960 §4.2.2.2; profile",
		"id-kp-OCSPSigning and id-pkix-ocsp-nocheck belong to delegated OCSP responder certificates only: any other certificate carrying them could answer for its issuer's certificates, unchecked",
		func(c *ctx) []string {
			if c.exp.Purpose == "" || c.exp.Purpose == PurposeOCSPSigner {
				return nil
			}
			var out []string
			if c.hasEKUOID(oidEKUOCSPSigning) {
				out = append(out, "id-kp-OCSPSigning in a certificate of purpose "+string(c.exp.Purpose))
			}
			if _, ok := c.raw.ext(oidExtOCSPNoCheck); ok {
				out = append(out, "id-pkix-ocsp-nocheck in a certificate of purpose "+string(c.exp.Purpose))
			}
			return out
		})

	register("e_tsa_eku_not_sole", Error, "RFC 3161 §2.3",
		"a TSA certificate must have id-kp-timeStamping as its only extended key usage",
		func(c *ctx) []string {
			if c.hasEKUOID(oidEKUTimeStamping) && len(c.eku) != 1 {
				return one("id-kp-timeStamping among %d EKUs", len(c.eku))
			}
			return nil
		})

	register("e_tsa_eku_not_critical", Error, "RFC 3161 §2.3; INTEROP.md (OpenSSL rejects a non-critical one)",
		"the extendedKeyUsage of a TSA certificate must be critical",
		func(c *ctx) []string {
			if e, ok := c.raw.ext(oidExtExtKeyUsage); ok && c.hasEKUOID(oidEKUTimeStamping) && !e.critical {
				return one("id-kp-timeStamping in a non-critical extendedKeyUsage")
			}
			return nil
		})
}

// urls returns the CRL distribution point and AIA URLs.
func (c *ctx) urls() []string {
	out := append([]string(nil), c.crldp...)
	for _, a := range c.aia {
		if a.isURI {
			out = append(out, a.uri)
		}
	}
	return out
}

func isIA5(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
