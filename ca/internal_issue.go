package ca

import (
	"context"
	"fmt"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/internal/store"
)

// IssueFor issues a certificate to another platform service (the TSA for
// its time-stamping units, later the seal and OCSP services) without an
// HTTP round trip: the current generation of caID signs csrDER under
// profile with the registration record, through the same path as the API
// (profile, lint, serial and TBS recorded, signature, store, audit as
// actor). cmd/govtrust hands the CA to those services as a small
// interface, so they never import this package (ARCHITECTURE.md §1).
// It is the only path to the internal profiles (ocsp-signer, tsa,
// node-tls, seal-maker: profile.Profile.Internal), which the API refuses.
//
// It returns the certificate and the chain of the CA that signed it (the
// CA first, up to its root).
func (s *Service) IssueFor(ctx context.Context, caID, profileName string, csrDER []byte, record map[string]string, actor string) ([]byte, [][]byte, error) {
	return s.issueFor(ctx, caID, profileName, csrDER, record, actor, true)
}

// IssueForApplication is IssueFor for a key that a platform service keeps
// on behalf of an application (the signing API's keys, whose profile the
// requester chooses): the internal profiles are refused, as the issue API
// refuses them, since the application, not the platform, decides what
// such a key signs.
func (s *Service) IssueForApplication(ctx context.Context, caID, profileName string, csrDER []byte, record map[string]string, actor string) ([]byte, [][]byte, error) {
	return s.issueFor(ctx, caID, profileName, csrDER, record, actor, false)
}

func (s *Service) issueFor(ctx context.Context, caID, profileName string, csrDER []byte, record map[string]string, actor string, internal bool) ([]byte, [][]byte, error) {
	if s.env == nil {
		return nil, nil, fmt.Errorf("ca: issue for %s: service not started", actor)
	}
	a, err := s.current(caID)
	if err != nil {
		return nil, nil, err
	}
	prof := s.profiles[profileName]
	if prof == nil {
		return nil, nil, fmt.Errorf("%w: unknown profile %q", ErrRequest, profileName)
	}
	if a.parent == "" || prof.CA != nil {
		return nil, nil, fmt.Errorf("%w: %s cannot issue %s certificates to services", ErrPolicy, a.id, profileName)
	}
	if prof.Internal && !internal {
		return nil, nil, fmt.Errorf("%w: profile %s is for the platform's own services, not for application keys", ErrPolicy, prof.Name)
	}
	csr, err := profile.ParseCSR(csrDER)
	if err != nil {
		return nil, nil, profileError(err)
	}
	parents, err := constrainingParents(a)
	if err != nil {
		return nil, nil, err
	}
	res, err := prof.Apply(profile.Input{CSR: csr, Record: record, Now: s.env.Clock.Now().UTC(), Issuer: a.cert, Chain: parents, CAID: a.id, Vars: s.vars})
	if err != nil {
		return nil, nil, profileError(err)
	}
	rec := func(ctx context.Context, tx *store.Tx, serial string, der []byte, cert *smx509.Certificate) error {
		row := &certRow{issuer: a.id, serial: serial, subject: cert.Subject.String(), profile: prof.Name, status: "good",
			requester: actor, requesterOrg: "", notBefore: cert.NotBefore, notAfter: cert.NotAfter,
			created: s.env.Clock.Now().UTC(), der: der}
		return s.record(ctx, tx, actor, row, res.Notes)
	}
	der, _, err := s.issueLinted(ctx, a, issuance{res: res, profile: prof.Name, record: rec})
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s certificate on %s for %s: %w", profileName, a.id, actor, err)
	}
	return der, a.chain, nil
}
