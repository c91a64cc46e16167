// Package ceremony reads and carries out CA key ceremonies: one reviewed
// YAML file per ceremony (in the manner of Boulder's cmd/ceremony, STYLE.md)
// says which CA is made, with which subject, algorithm, key, validity, path
// length, policies and distribution URLs, and for a subordinate or
// cross-certificate which issuer signs it.
//
// Three kinds of ceremony make certificates: "root" (a self-signed root,
// usually kept offline), "sub" (a subordinate CA: its key and PKCS #10
// request on the node that will run it, then its certificate signed from the
// request on the root's machine) and "cross" (an existing root's subject and
// key certified by another root, so relying parties that trust either reach
// both). A fourth, "crl" (CRLFile), revokes certificates an offline root
// signed and signs the root's CRL on its machine.
//
// The file is decoded strictly (unknown keys are errors) and validated
// before any key is touched; its SM3 hash (GB/T 32905) identifies the
// reviewed text in the audit records of the ceremony, and a run checks it
// against the hash the reviewers signed off (File.CheckSM3). The files a
// ceremony reads besides are pinned in it by SHA-256 fingerprint: the
// request a sub-CA's signing step signs, the root a cross ceremony
// certifies, and optionally the issuer's certificate (CheckPin). Every certificate is
// linted before the real signature (lint.Precheck, RELIABILITY.md §1.1) and
// the signed TBSCertificate is checked equal to the linted one.
//
// The package holds no keys and does no I/O beyond reading the ceremony
// file: callers give it a crypto.Signer from the key manager (hsm).
package ceremony
