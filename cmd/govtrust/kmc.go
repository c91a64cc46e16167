package main

import (
	"context"
	"time"

	"github.com/govtrust/govtrust/ca"
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
