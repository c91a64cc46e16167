package main

import (
	"context"
	"errors"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/kms/kmc"
)

// kmcClient hands the platform's key management centre to the CA through
// the CA's own KMC interface, so that neither service imports the other
// (ARCHITECTURE.md §1); a remote GM/T 0014 KMC would replace it.
type kmcClient struct{ k *kmc.Service }

var _ ca.KMC = kmcClient{}

func (c kmcClient) ApplyKey(ctx context.Context, req *ca.KMCRequest) (*ca.KMCKey, error) {
	out, err := c.k.ApplyKey(ctx, &kmc.ApplyKeyRequest{SigningPublicKey: req.SigningPublicKey, Subject: req.Subject,
		Org: req.Org, Requester: req.Requester, CA: req.CA, SKF: req.SKF})
	if err != nil {
		return nil, err
	}
	return &ca.KMCKey{EscrowID: out.EscrowID, PublicKey: out.PublicKey, EnvelopedKey: out.EnvelopedKey, SKFBlob: out.SKFBlob}, nil
}

func (c kmcClient) BindCertificate(ctx context.Context, escrowID, caID, encSerial, signSerial string, notAfter time.Time) error {
	return c.k.Bind(ctx, escrowID, caID, encSerial, signSerial, notAfter)
}

func (c kmcClient) AbandonKey(ctx context.Context, escrowID, reason string) error {
	return c.k.Abandon(ctx, escrowID, reason)
}

// RevokeKey records the revocation with the KMC's escrow in the CA's
// transaction: both services share the database (GM/T 0014 RevokeKeyReq).
func (c kmcClient) RevokeKey(ctx context.Context, tx *store.Tx, rev *ca.KeyRevocation) error {
	err := c.k.RevokeKey(ctx, tx, &kmc.KeyRevocation{CA: rev.CA, EncSerial: rev.EncSerial, PublicKey: rev.PublicKey,
		RevokedAt: rev.RevokedAt, Reason: rev.Reason, Actor: rev.Actor})
	if errors.Is(err, kmc.ErrNotStarted) {
		return errors.Join(ca.ErrKMCLater, err)
	}
	return err
}

func (c kmcClient) EscrowedKey(ctx context.Context, spki []byte) (string, error) {
	return c.k.EscrowedKey(ctx, spki)
}

func (c kmcClient) EscrowBindings(ctx context.Context, q store.Querier) ([]ca.EscrowBinding, error) {
	bs, err := c.k.Bindings(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]ca.EscrowBinding, len(bs))
	for i, b := range bs {
		out[i] = ca.EscrowBinding{EscrowID: b.EscrowID, CA: b.CA, EncSerial: b.EncSerial, SignSerial: b.SignSerial}
	}
	return out, nil
}

// caCertificates hands the CA's records to the KMC through the KMC's own
// Certificates interface: the KMC checks recovery recipients and
// encryption certificates against them and finds the certificate of an
// escrow whose binding was lost.
type caCertificates struct{ c *ca.Service }

var _ kmc.Certificates = caCertificates{}

func kmcCertificate(c *ca.IssuedCertificate) *kmc.Certificate {
	return &kmc.Certificate{CA: c.CA, Serial: c.Serial, DER: c.DER, Status: c.Status, Requester: c.Requester, Created: c.Created,
		RevokedAt: c.RevokedAt, Reason: c.Reason}
}

func (x caCertificates) IssuedCertificate(ctx context.Context, caID, serial string) (*kmc.Certificate, error) {
	c, err := x.c.IssuedCertificate(ctx, caID, serial)
	if err != nil {
		return nil, err
	}
	return kmcCertificate(c), nil
}

func (x caCertificates) FindIssued(ctx context.Context, der []byte) (*kmc.Certificate, error) {
	c, err := x.c.FindIssued(ctx, der)
	if err != nil {
		return nil, err
	}
	return kmcCertificate(c), nil
}

func (x caCertificates) CACertificates() []*smx509.Certificate { return x.c.CACertificates() }

func (x caCertificates) Revoked(ctx context.Context, der []byte) (time.Time, string, error) {
	return x.c.Revoked(ctx, der)
}

func (x caCertificates) CertificatesForKey(ctx context.Context, caID string, spki []byte, from, to time.Time) ([]*kmc.Certificate, error) {
	cs, err := x.c.CertificatesForKey(ctx, caID, spki, from, to)
	if err != nil {
		return nil, err
	}
	out := make([]*kmc.Certificate, len(cs))
	for i, c := range cs {
		out[i] = kmcCertificate(c)
	}
	return out, nil
}
