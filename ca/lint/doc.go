// Package lint checks to-be-signed certificates against RFC 5280, the
// GM/T 0015 certificate profile, the CA/Browser Forum Baseline Requirements
// items govtrust adopts (RELIABILITY.md §1.3) and the profile they were
// issued under, before the CA signs them (Boulder's pre-issuance linting,
// BR §4.3.1.2).
//
// The lints are govtrust's own, because zlint cannot parse SM2 certificates
// (INTEROP.md §1). They read the DER structurally rather than trusting the
// Go parser, which refuses some faults outright (negative serials,
// duplicate extensions, mismatched algorithm identifiers): such a
// certificate gets the specific lint and e_x509_parse.
//
// ECDSA and RSA certificates are also run through zlint v3 (zlint.go):
// its RFC and Community sources for every purpose, and the CA/B Forum
// Baseline Requirements for TLS server certificates; ZlintSources and
// ZlintExclusions say which and why. zlint errors and fatals are Error
// findings, so they refuse issuance like the own ones; its findings are
// named "zlint/<name>". Each purpose's lint set is filtered once and kept.
//
// Use:
//
//	linted, err := lint.Precheck(template, issuer, pub, result.Expect)
//	if errs := lint.Errors(linted.Findings); len(errs) > 0 { refuse }
//	der, err := smx509.CreateCertificate(rand, template, issuer, pub, hsmSigner)
//	if err := linted.SameTBS(der); err != nil { mis-issuance: stop }
//
// Certificate and Check lint an existing certificate; PublicKey lints a
// SubjectPublicKeyInfo alone (what a CA runs on a request's key first).
// Lints lists every lint with its severity and source. Lint names follow
// zlint's convention: e_ for errors, w_ for warnings.
//
// GM/T 0015 subject-identity extensions: the OIDs 1.2.156.10260.4.1.1–.5
// and the encodings (IdentifyCode CHOICE with EXPLICIT tags for the resident
// ID, PrintableString for the others) are the 2012 edition's as deployed
// CAs, client software and XiPKI use them; the standard text could not be
// read here, and the 2023 edition's OIDs (1.2.156.10260.4.1.1.1,
// 1.2.156.10260.4.4) come from one unverified listing (GM-STANDARDS.md §2.1,
// §10 item 7). The unified social credit code, which the 2012 edition
// predates, is carried in the organisation-code extension.
package lint
