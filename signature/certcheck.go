package signature

import (
	"context"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// CheckCertificate checks cert at the signing time at, whose evidence is
// ev (a time-stamp, or the verification time): validity, the chain to a
// trust anchor and the revocation of every certificate below the anchor,
// as for CMS signers. Other signature formats (the seal service's
// SES_Signature) use it so that every format judges certificates alike.
// The report's Valid and Checks say the outcome.
func (v *Verifier) CheckCertificate(ctx context.Context, cert *smx509.Certificate, extra []*smx509.Certificate, at time.Time, ev Evidence) SignerReport {
	sr := SignerReport{Valid: true, Signer: info(cert), Algorithm: algName(cert), SigningTime: at.UTC(), SigningTimeEvidence: ev}
	all := append(append([]*smx509.Certificate{}, extra...), v.Intermediates...)
	v.checkCertificate(ctx, &sr, cert, all, nil)
	return sr
}

// CheckTimeStamp verifies an RFC 3161 token whose message imprint is the
// hash of data (for a signature time-stamp, the signature value) against
// the verifier's anchors, and returns the time it proves and its evidence.
func (v *Verifier) CheckTimeStamp(token, data []byte, extra []*smx509.Certificate) (time.Time, Evidence, error) {
	return v.checkToken(token, data, nil, append(append([]*smx509.Certificate{}, extra...), v.Intermediates...))
}

// Summarize renders a report's human-readable verdict.
func Summarize(r *Report) string { return summary(r) }
