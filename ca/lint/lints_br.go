package lint

import "encoding/asn1"

// The CA/B Forum Baseline Requirements rules of the TLS server certificate
// shape, written here so that they hold for every key type: zlint checks
// them for ECDSA and RSA, but cannot parse SM2 certificates (zlint.go), so
// without these an SM2 server certificate would escape them. They apply to
// the purpose tls-server (and, for a certificate linted without a profile,
// to one with id-kp-serverAuth, as zlint's BR source does); the platform's
// private listeners (tls-server-private) are not bound by the BR.
func init() {
	register("e_br_tls_locality_without_org", Error, "BR §7.1.2.7.2–7.1.2.7.4 (formerly §7.1.4.2.2 d, e)",
		"a TLS server certificate names a localityName or stateOrProvinceName only beside an organizationName (or givenName, surname)",
		func(c *ctx) []string {
			if !c.brTLSServer() || c.subjectHas(oidAttrO, oidAttrGivenName, oidAttrSurname) {
				return nil
			}
			var out []string
			if c.subjectHas(oidAttrL) {
				out = append(out, "localityName without organizationName")
			}
			if c.subjectHas(oidAttrST) {
				out = append(out, "stateOrProvinceName without organizationName")
			}
			return out
		})

	register("e_br_tls_org_without_locality", Error, "BR §7.1.2.7.4 (Organization Validated)",
		"a TLS server certificate naming an organizationName names its localityName or stateOrProvinceName too",
		func(c *ctx) []string {
			if c.brTLSServer() && c.subjectHas(oidAttrO) && !c.subjectHas(oidAttrL, oidAttrST) {
				return one("organizationName without localityName or stateOrProvinceName")
			}
			return nil
		})

	register("e_br_tls_ou_present", Error, "BR §7.1.2.7.4 (organizationalUnitName: MUST NOT be present, since 2022-09-01)",
		"a TLS server certificate carries no organizationalUnitName",
		func(c *ctx) []string {
			if c.brTLSServer() && c.subjectHas(oidAttrOU) {
				return one("organizationalUnitName in the subject")
			}
			return nil
		})

	register("e_br_tls_san_not_host", Error, "BR §7.1.2.7.12 (only dNSName and iPAddress)",
		"a TLS server certificate's subjectAltName holds only dNSName and iPAddress names (no rfc822Name, URI or other name)",
		func(c *ctx) []string {
			if !c.brTLSServer() {
				return nil
			}
			var out []string
			for _, n := range c.san {
				switch n.tag {
				case 2, 7:
				case 1:
					out = append(out, "rfc822Name "+strconvQuote(string(n.value)))
				case 6:
					out = append(out, "uniformResourceIdentifier "+strconvQuote(string(n.value)))
				default:
					out = append(out, "GeneralName ["+itoa(n.tag)+"]")
				}
			}
			return out
		})

	register("e_br_tls_crldp_missing", Error, "BR §7.1.2.7.6, §7.1.2.11.2; govtrust publishes a CRL for every CA",
		"a TLS server certificate carries an HTTP CRL distribution point",
		func(c *ctx) []string {
			if c.brTLSServer() && !hasHTTP(c.crldp) {
				return one("no http cRLDistributionPoints URL")
			}
			return nil
		})

	register("e_br_tls_aia_missing", Error, "BR §7.1.2.7.7; govtrust runs an OCSP responder for every CA",
		"a TLS server certificate's authorityInfoAccess gives the issuer's certificate (caIssuers) and its OCSP responder over HTTP",
		func(c *ctx) []string {
			if !c.brTLSServer() {
				return nil
			}
			var ocsp, issuers []string
			for _, a := range c.aia {
				switch {
				case a.isURI && a.method.Equal(oidAccessOCSP):
					ocsp = append(ocsp, a.uri)
				case a.isURI && a.method.Equal(oidAccessCAIssuers):
					issuers = append(issuers, a.uri)
				}
			}
			var out []string
			if !hasHTTP(ocsp) {
				out = append(out, "no http OCSP URL in authorityInfoAccess")
			}
			if !hasHTTP(issuers) {
				out = append(out, "no http caIssuers URL in authorityInfoAccess")
			}
			return out
		})
}

// brTLSServer reports whether the BR's TLS server rules apply: the profile's
// purpose is tls-server or, linted without a profile, the certificate is a
// leaf with id-kp-serverAuth (the same choice zlintPurpose makes).
func (c *ctx) brTLSServer() bool {
	return c.leaf() && c.zlintPurpose() == PurposeTLSServer
}

// subjectHas reports whether the subject has an attribute of one of the
// types.
func (c *ctx) subjectHas(types ...asn1.ObjectIdentifier) bool {
	for _, a := range c.subject {
		if oidIn(a.typ, types...) {
			return true
		}
	}
	return false
}

func hasHTTP(urls []string) bool {
	for _, u := range urls {
		if len(u) > 7 && u[:7] == "http://" {
			return true
		}
	}
	return false
}
