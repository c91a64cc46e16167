// Package profile holds certificate profiles: versioned, strictly parsed
// YAML documents that say what a certificate of one kind may contain, and
// Apply, which turns a PKCS #10 request plus the RA's registration record
// into a certificate template under a profile.
//
// A profile fixes the validity (a maximum, with up to one hour of
// backdating), the key types and sizes accepted, key usage and extended key
// usage, CA constraints, name constraints, where each subject attribute
// comes from (the request, a fixed value, the registration record, or
// nowhere), which subjectAltName names a request may carry, certificate
// policies, CRL distribution points and AIA URLs (templates filled with the
// CA's id and deployment variables), and the GM/T 0015 subject-identity
// extensions (resident ID, social-insurance number, organisation code or
// unified social credit code, tax number). The eleven built-in profiles live
// in profiles/*.yaml as examples of the format.
//
// Apply is deliberately strict (ACCEPTANCE ):
//
//   - the request's signature is its proof of possession (SM2 requests
//     verify with the GM/T 0009 default user ID 1234567812345678);
//   - weak and known-bad keys are refused before anything else: RSA below
//     2048 bits or not a multiple of 8, even or tiny exponents, small
//     factors, Fermat-close primes, the ROCA fingerprint; EC curves other
//     than P-256, P-384 and SM2 (P-192, P-224, P-521, secp256k1...); points
//     off the curve; key types the profile does not list; an SM2 key under a
//     non-SM2 CA or the reverse;
//   - requested extensions are ignored, with a note, except subjectAltName,
//     whose names are kept only as the profile allows (a name the profile
//     cannot honour refuses the request); a CA bit, keyCertSign or a
//     request-chosen critical extension never reaches the certificate; a
//     request repeating an extension is refused;
//   - subject values are refused when they hold control characters (NUL
//     included) or bidirectional overrides (U+202E...), surrounding white
//     space, or exceed the RFC 5280 Appendix A upper bounds (CN 64...); they
//     are encoded as PrintableString when they fit its character set and as
//     UTF8String otherwise, so Chinese names are UTF8String and a '&' the
//     request sent in a PrintableString comes out as UTF8String;
//   - an iPAddress in an IANA special-purpose range (private, documentation,
//     shared...) is refused unless the profile sets san.ip.internal, and a
//     dNSName whose top-level label is not in the root zone counts as an
//     internal name; tls-server profiles may allow neither, and a TLS server
//     certificate naming an organisation needs its locality or province
//     (BR §7.1.2.7.4, §7.1.2.7.12), so what zlint's BR lints would refuse is
//     refused here first with a reason the RA can act on;
//   - validity is the shorter of the request and the profile, backdated by
//     the profile's backdate, and clamped to the issuer's validity, each
//     change recorded in Result.Notes.
//
// The template Apply returns has no serial: the CA allocates it, lints the
// template with lint.Precheck against Result.Expect, signs, and checks the
// signed TBS equals the linted one.
//
// GM/T 0015 identity extension OIDs and encodings are the 2012 edition's as
// deployed CAs use them (1.2.156.10260.4.1.x); the 2023 edition's numbers
// are known only from an unverified listing. See package lint for the
// details and the uncertainty.
package profile
