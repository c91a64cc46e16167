// Package pdf seals PDF documents: it adds a visible signature field to a
// PDF in an incremental update (ISO 32000-1 §7.5.6) and embeds a detached
// CMS SignedData in it (ISO 32000-1 §12.8.3.3, SubFilter
// adbe.pkcs7.detached), and verifies such signatures: only detached ones
// (adbe.pkcs7.detached or ETSI.CAdES.detached, no eContent), since a
// SignedData that carries its own content signs that, not the document.
//
// Sealing is in two steps because the official's USB key signs on the
// official's computer: Prepare appends the increment with a /Contents
// placeholder and a patched /ByteRange and returns the digest of the
// bytes the ByteRange covers; NewSignedData builds the SignedData whose
// signed attributes (contentType, messageDigest, signingTime, and the
// SESeal being applied, OIDAttrSeal) the key signs; Attach puts the
// signature in, the caller adds its RFC 3161 signature time-stamp, and
// Finish writes the DER into the placeholder.
//
// SM2 seals are signed with SM2 over SM3 (GM/T 0010 signature OIDs, which
// only the platform's verifier reads); seals that must verify in common
// PDF readers are ECDSA P-256 with SHA-256, which poppler's pdfsig and
// Adobe Reader check.
//
// A seal may be placed on a keyword of the pages' text (FindKeyword,
// keyword.go): pdfcpu gives no text positions, so the page content is
// interpreted here, far enough for simple and Type0/ToUnicode fonts.
//
// The PDF object model is github.com/pdfcpu/pdfcpu (INTEROP.md): it
// parses the document and writes the increment; it has no signing API,
// so the placeholder and the ByteRange are patched here. The package does
// no I/O (ARCHITECTURE.md §1).
package pdf
