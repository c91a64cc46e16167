package lint

import (
	"encoding/asn1"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"
)

const (
	gmSignBits = kuDigitalSignature | kuNonRepudiation
	gmEncBits  = kuKeyEncipherment | kuDataEncipherment | kuKeyAgreement | kuEncipherOnly | kuDecipherOnly
)

// GM/T 0015 lints and the lints of what the profile expects.
func init() {
	register("e_gmt0015_ku_mixed", Error, "GM/T 0015 dual certificates; GM/T 0024 §7.3.1.1.1; GM-STANDARDS.md §2.1",
		"an SM2 end-entity key is either a signing key (digitalSignature, nonRepudiation) or an encryption key (keyEncipherment, dataEncipherment, keyAgreement), never both",
		func(c *ctx) []string {
			if c.key != nil && c.key.kind == keySM2 && c.leaf() && c.kuOK && c.ku&gmSignBits != 0 && c.ku&gmEncBits != 0 {
				return one("SM2 key usage %s mixes signing and encryption", kuString(c.ku))
			}
			return nil
		})

	register("e_gmt0015_sign_ku", Error, "GM/T 0015; GM-STANDARDS.md §2.1",
		"a signing certificate has only digitalSignature and nonRepudiation",
		func(c *ctx) []string {
			if c.exp.Purpose == PurposeSign && c.kuOK && c.ku&^gmSignBits != 0 {
				return one("signing certificate with key usage %s", kuString(c.ku))
			}
			return nil
		})

	register("e_gmt0015_enc_ku", Error, "GM/T 0015; GM-STANDARDS.md §2.1",
		"an encryption certificate has only keyEncipherment, dataEncipherment and keyAgreement",
		func(c *ctx) []string {
			if c.exp.Purpose == PurposeEnc && c.kuOK && c.ku&^(kuKeyEncipherment|kuDataEncipherment|kuKeyAgreement) != 0 {
				return one("encryption certificate with key usage %s", kuString(c.ku))
			}
			return nil
		})

	register("e_gmt0015_identity_critical", Error, "GM/T 0015 (private extensions); RFC 5280 §4.2",
		"the subject-identity extensions must be non-critical: most relying parties do not know them",
		func(c *ctx) []string {
			var out []string
			for _, e := range c.raw.exts {
				if isIdentityOID(e.id) && e.critical {
					out = append(out, "identity extension "+e.id.String()+" is critical")
				}
			}
			return out
		})

	register("e_gmt0015_identity_invalid", Error, "GM/T 0015; GB 11643; GB 11714; GB 32100",
		"a subject-identity extension must be encoded as GM/T 0015 defines it and hold a well-formed number",
		func(c *ctx) []string {
			var out []string
			for _, e := range c.raw.exts {
				if !isIdentityOID(e.id) {
					continue
				}
				kind, v, err := ParseIdentity(e.id, e.value)
				if err == nil && kind != "" {
					err = ValidateIdentity(kind, v)
				}
				if err != nil {
					out = append(out, e.id.String()+": "+err.Error())
				}
			}
			return out
		})

	register("e_gmt0015_identity_missing", Error, "profile (GM/T 0015 identity extensions)",
		"the identity extensions the profile requires must be present",
		func(c *ctx) []string {
			var out []string
			for _, id := range c.exp.IdentityExtensions {
				if _, ok := c.raw.ext(id); !ok {
					out = append(out, "identity extension "+id.String()+" missing")
				}
			}
			return out
		})

	register("e_profile_ca_mismatch", Error, "profile",
		"the certificate must be a CA certificate exactly when the profile issues CA certificates",
		func(c *ctx) []string {
			if c.exp.Purpose == "" {
				return nil
			}
			if want := c.exp.Purpose == PurposeCA; want != c.isCA {
				return one("profile purpose %s, certificate cA %v", c.exp.Purpose, c.isCA)
			}
			return nil
		})

	register("e_profile_pathlen_mismatch", Error, "profile; RFC 5280 §4.2.1.9",
		"a CA certificate carries the pathLenConstraint the profile sets",
		func(c *ctx) []string {
			if c.exp.Purpose != PurposeCA || !c.bcOK {
				return nil
			}
			switch {
			case c.exp.PathLen == nil && c.bc.hasPathLen:
				return one("pathLenConstraint %d, profile sets none", c.bc.pathLen)
			case c.exp.PathLen != nil && !c.bc.hasPathLen:
				return one("no pathLenConstraint, profile sets %d", *c.exp.PathLen)
			case c.exp.PathLen != nil && *c.exp.PathLen != c.bc.pathLen:
				return one("pathLenConstraint %d, profile sets %d", c.bc.pathLen, *c.exp.PathLen)
			}
			return nil
		})

	register("e_profile_ku_mismatch", Error, "profile",
		"the key usage must be exactly the profile's",
		func(c *ctx) []string {
			if c.exp.KeyUsage != 0 && (!c.kuOK || c.ku != int(c.exp.KeyUsage)) {
				return one("key usage %s, profile %s", kuString(c.ku), kuString(int(c.exp.KeyUsage)))
			}
			return nil
		})

	register("e_profile_eku_mismatch", Error, "profile",
		"the extended key usages must be exactly the profile's",
		func(c *ctx) []string {
			if c.exp.ExtKeyUsage != nil && !sameOIDs(c.eku, c.exp.ExtKeyUsage) {
				return one("EKU %s, profile %s", oidsString(c.eku), oidsString(c.exp.ExtKeyUsage))
			}
			return nil
		})

	register("e_profile_policies_mismatch", Error, "profile; RFC 5280 §4.2.1.4",
		"certificatePolicies must be present with exactly the profile's policy OIDs",
		func(c *ctx) []string {
			if c.exp.Policies != nil && !sameOIDs(c.policies, c.exp.Policies) {
				return one("policies %s, profile %s", oidsString(c.policies), oidsString(c.exp.Policies))
			}
			return nil
		})

	register("e_profile_crldp_mismatch", Error, "profile; RELIABILITY.md §1.2 (CFCA 1809382)",
		"the CRL distribution points must be exactly the profile's URLs",
		func(c *ctx) []string {
			if c.exp.CRLDistributionPoints != nil && !sameStrings(c.crldp, c.exp.CRLDistributionPoints) {
				return one("CRLDP %q, profile %q", c.crldp, c.exp.CRLDistributionPoints)
			}
			return nil
		})

	register("e_profile_aia_mismatch", Error, "profile",
		"the OCSP and caIssuers URLs must be exactly the profile's",
		func(c *ctx) []string {
			var ocsp, issuers []string
			for _, a := range c.aia {
				switch {
				case a.method.Equal(oidAccessOCSP):
					ocsp = append(ocsp, a.uri)
				case a.method.Equal(oidAccessCAIssuers):
					issuers = append(issuers, a.uri)
				}
			}
			var out []string
			if c.exp.OCSPServers != nil && !sameStrings(ocsp, c.exp.OCSPServers) {
				out = append(out, fmt.Sprintf("OCSP %q, profile %q", ocsp, c.exp.OCSPServers))
			}
			if c.exp.IssuingCertificateURLs != nil && !sameStrings(issuers, c.exp.IssuingCertificateURLs) {
				out = append(out, fmt.Sprintf("caIssuers %q, profile %q", issuers, c.exp.IssuingCertificateURLs))
			}
			return out
		})

	register("e_profile_validity_too_long", Error, "profile; BR §6.3.2",
		"the validity period (notAfter − notBefore + 1 s) must not exceed the profile's maximum",
		func(c *ctx) []string {
			if c.exp.MaxValidity == 0 || !c.validityOK {
				return nil
			}
			if d := c.notAfter.Sub(c.notBefore) + time.Second; d > c.exp.MaxValidity {
				return one("validity %s exceeds the profile's %s", d, c.exp.MaxValidity)
			}
			return nil
		})

	register("e_notbefore_not_near_signing", Error, "BR §7.1.2.7; ACCEPTANCE A-09",
		"notBefore must lie within 48 hours of the signing time",
		func(c *ctx) []string {
			if c.exp.Now.IsZero() || !c.validityOK {
				return nil
			}
			d := c.notBefore.Sub(c.exp.Now)
			if d > 48*time.Hour || d < -48*time.Hour {
				return one("notBefore %s is %s from the signing time %s", c.notBefore, d, c.exp.Now.UTC())
			}
			return nil
		})

	register("e_tls_eku_missing", Error, "BR §7.1.2.7.10; RFC 5280 §4.2.1.12",
		"a TLS certificate must carry serverAuth (server) or clientAuth (client) in extendedKeyUsage",
		func(c *ctx) []string {
			switch {
			case (c.exp.Purpose == PurposeTLSServer || c.exp.Purpose == PurposeTLSPrivate) && !c.hasEKUOID(oidEKUServerAuth):
				return one("TLS server certificate without id-kp-serverAuth")
			case c.exp.Purpose == PurposeTLSClient && !c.hasEKUOID(oidEKUClientAuth):
				return one("TLS client certificate without id-kp-clientAuth")
			}
			return nil
		})

	register("e_tls_server_san_missing", Error, "BR §7.1.2.7.12; RFC 6125 §6.4.4",
		"a TLS server certificate must name its hosts in subjectAltName dNSName or iPAddress",
		func(c *ctx) []string {
			if c.exp.Purpose != PurposeTLSServer && c.exp.Purpose != PurposeTLSPrivate {
				return nil
			}
			for _, n := range c.san {
				if n.tag == 2 || n.tag == 7 {
					return nil
				}
			}
			return one("no dNSName or iPAddress in subjectAltName")
		})

	register("e_tls_cn_not_in_san", Error, "BR §7.1.4.3 (commonName)",
		"a TLS server certificate's commonName, if any, must be one of its subjectAltName values",
		func(c *ctx) []string {
			if c.exp.Purpose != PurposeTLSServer && c.exp.Purpose != PurposeTLSPrivate {
				return nil
			}
			var out []string
			for _, a := range c.subject {
				if !a.typ.Equal(oidAttrCN) {
					continue
				}
				if !c.sanContains(string(a.value)) {
					out = append(out, "commonName "+strconvQuote(string(a.value))+" is not in subjectAltName")
				}
			}
			return out
		})

	register("e_ocsp_signer_eku_missing", Error, "RFC 6960 §4.2.2.2",
		"a delegated OCSP responder certificate must carry id-kp-OCSPSigning",
		func(c *ctx) []string {
			if c.exp.Purpose == PurposeOCSPSigner && !c.hasEKUOID(oidEKUOCSPSigning) {
				return one("OCSP signer without id-kp-OCSPSigning")
			}
			return nil
		})

	register("e_tsa_eku_missing", Error, "RFC 3161 §2.3",
		"a TSA certificate must carry id-kp-timeStamping",
		func(c *ctx) []string {
			if c.exp.Purpose == PurposeTSA && !c.hasEKUOID(oidEKUTimeStamping) {
				return one("TSA certificate without id-kp-timeStamping")
			}
			return nil
		})
}

// sanContains reports whether v is byte for byte a dNSName or the text
// form of an iPAddress in the subjectAltName (BR §7.1.4.3: the CN is
// "byte-for-byte identical" to one of them; a CN differing in case is
// refused by zlint too).
func (c *ctx) sanContains(v string) bool {
	for _, n := range c.san {
		switch n.tag {
		case 2:
			if string(n.value) == v {
				return true
			}
		case 7:
			if ipString(n.value) == v {
				return true
			}
		}
	}
	return false
}

func ipString(b []byte) string {
	if len(b) != 4 && len(b) != 16 {
		return ""
	}
	return net.IP(b).String()
}

func sameOIDs(a, b []asn1.ObjectIdentifier) bool {
	as, bs := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		as[i] = a[i].String()
	}
	for i := range b {
		bs[i] = b[i].String()
	}
	return sameStrings(as, bs)
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

func oidsString(ids []asn1.ObjectIdentifier) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

var kuNames = []string{"digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment",
	"keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}

// KeyUsageNames are the RFC 5280 §4.2.1.3 names of the key usage bits, in
// bit order (bit 0 digitalSignature ... bit 8 decipherOnly).
func KeyUsageNames() []string { return append([]string(nil), kuNames...) }

func kuString(ku int) string {
	var s []string
	for i, n := range kuNames {
		if ku&(1<<uint(i)) != 0 {
			s = append(s, n)
		}
	}
	return "[" + strings.Join(s, " ") + "]"
}
