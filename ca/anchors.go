package ca

import "github.com/emmansun/gmsm/smx509"

// CACertificates returns the certificate of every platform CA generation
// (roots and issuing CAs, active and retired). Relying services (signature
// verification) take the self-signed ones as trust anchors and the others
// as intermediates; cmd/govtrust hands them this method through a small
// interface of their own (ARCHITECTURE.md §1).
func (s *Service) CACertificates() []*smx509.Certificate {
	if s.env == nil {
		return nil
	}
	var out []*smx509.Certificate
	for _, a := range s.authorities() {
		out = append(out, a.cert)
	}
	return out
}
