package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

// The node's HTTPS certificate (issue #5 §7). The CA is the node's
// TLSProvider: the node asks once the services have started, before its
// listeners open, and then every node.TLSCheckInterval. The CA answers with
//
//   - the certificate it is asked about, while it is good: issued by the
//     current ecdsa-issuing generation, not revoked, naming every name the
//     listener is reached by, and less than two thirds into its validity;
//   - after a restart (no current certificate), the newest good one it
//     issued to this node whose key is still in the key manager, under the
//     same conditions;
//   - otherwise a new one: a new P-256 key in the key manager, a request
//     signed with it, the node-tls profile, and the CA's ordinary issuance
//     (pre-issuance lint, serial and TBS recorded before signing, the
//     certificate, its audit record and outbox event stored before it is
//     served).
//
// Renewing at two thirds of a 30-day validity leaves ten days to notice a
// renewal that keeps failing (the log says so at every check) before
// clients see an expired certificate; /readyz reports it once the served
// certificate has expired, or at once when it or a CA above it is revoked
// (node.ErrTLSUnusable), since clients that check revocation refuse it.
//
// The key is a software keystore key (soft:tls/<node>/<time>-<random>, key
// service "tls"), not a file: it rests encrypted under the master key like
// every other key, is created, used and deleted with an audit record, and
// the soft backend's crypto.Signer is what crypto/tls needs to sign
// handshakes. Each certificate gets a fresh key; keys older than the one
// being replaced are deleted after a renewal.

const (
	// nodeTLSLineage issues the node certificate: browsers, curl and
	// OpenSSL speak ECDSA, not SM2 (ARCHITECTURE.md §2).
	nodeTLSLineage = "ecdsa-issuing"
	nodeTLSProfile = "node-tls"
	// tlsKeyService owns the node TLS keys (key separation, ARCHITECTURE.md
	// §3: they are not the CA's keys and the CA's keys are not theirs).
	tlsKeyService = "tls"
)

var _ node.TLSProvider = (*Service)(nil)

// TLSCertificate implements node.TLSProvider. When no certificate can be
// given and the one being served is revoked, or chains to a revoked CA,
// the error is a node.ErrTLSUnusable, so /readyz says so until one can.
func (s *Service) TLSCertificate(ctx context.Context, req *node.TLSRequest) (*node.TLSCertificate, error) {
	if s.env == nil {
		return nil, errors.New("ca: not started")
	}
	ctx = audit.WithActor(ctx, "system")
	c, err := s.nodeTLS(ctx, req)
	if err != nil && req.Current != nil {
		if why := s.revokedInChain(ctx, req.Current.Chain); why != "" {
			err = fmt.Errorf("%w: %s, and no replacement could be made: %w", node.ErrTLSUnusable, why, err)
		}
	}
	return c, err
}

// revokedInChain names the first certificate of chain that a platform CA
// revoked, or "" (none, or the CA's records could not be read: a failure
// to renew is then reported as it is).
func (s *Service) revokedInChain(ctx context.Context, chain [][]byte) string {
	for i, der := range chain {
		at, reason, err := s.Revoked(ctx, der)
		if err != nil || at.IsZero() {
			continue
		}
		what := "the served certificate"
		if i > 0 {
			what = "a CA certificate of its chain"
			if c, err := x509.ParseCertificate(der); err == nil {
				what += " (" + c.Subject.String() + ")"
			}
		}
		return fmt.Sprintf("%s was revoked (%s) at %s", what, reason, at.UTC().Format(time.RFC3339))
	}
	return ""
}

// nodeTLS is TLSCertificate's answer.
func (s *Service) nodeTLS(ctx context.Context, req *node.TLSRequest) (*node.TLSCertificate, error) {
	a, err := s.current(nodeTLSLineage)
	if err != nil {
		return nil, err
	}
	cur := req.Current
	if cur == nil {
		if cur, err = s.storedNodeTLS(ctx, a); err != nil {
			return nil, err
		}
	}
	if cur != nil {
		why, err := s.nodeTLSDue(ctx, a, cur, req)
		if err != nil {
			return nil, err
		}
		if why == "" {
			return cur, nil
		}
		s.env.Logger.Info("renewing the node HTTPS certificate", "why", why)
	}
	return s.issueNodeTLS(ctx, a, req, cur)
}

// nodeName is the name the node certificate is issued to.
func (s *Service) nodeName() string {
	if s.env.Config != nil && s.env.Config.Node.Name != "" {
		return s.env.Config.Node.Name
	}
	return "node"
}

var keyNameRE = regexp.MustCompile(`[^a-z0-9.-]+`)

// tlsKeyPrefix is the key URI prefix of this node's TLS keys.
func (s *Service) tlsKeyPrefix() string {
	n := strings.Trim(keyNameRE.ReplaceAllString(strings.ToLower(s.nodeName()), "-"), "-.")
	if n == "" {
		n = "node"
	}
	if len(n) > 64 {
		n = n[:64]
	}
	return "soft:tls/" + n + "/"
}

// nodeTLSDue says why cur must be replaced, or "" when it is good.
func (s *Service) nodeTLSDue(ctx context.Context, a *authority, cur *node.TLSCertificate, req *node.TLSRequest) (string, error) {
	if len(cur.Chain) < 2 || !bytes.Equal(cur.Chain[1], a.cert.Raw) {
		return "issued by another CA or generation than the current " + nodeTLSLineage, nil
	}
	leaf, err := x509.ParseCertificate(cur.Chain[0])
	if err != nil {
		return "unparsable: " + err.Error(), nil
	}
	now := s.env.Clock.Now()
	renewAt := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
	switch {
	case now.Before(leaf.NotBefore):
		return "not valid yet (clock set back?)", nil
	case !now.Before(renewAt):
		return fmt.Sprintf("two thirds of its validity passed at %s", renewAt.UTC().Format(time.RFC3339)), nil
	}
	for _, name := range req.DNSNames {
		if leaf.VerifyHostname(name) != nil {
			return "does not name " + name, nil
		}
	}
	for _, ip := range req.IPAddresses {
		if leaf.VerifyHostname(ip.String()) != nil {
			return "does not name " + ip.String(), nil
		}
	}
	c, err := certBySerial(ctx, s.env.DB, a.id, serialHex(leaf.SerialNumber))
	switch {
	case errors.Is(err, ErrNotFound):
		return "not recorded by the CA", nil
	case err != nil:
		return "", err
	case c.status != "good":
		return "status " + c.status, nil
	}
	return "", nil
}

// storedNodeTLS returns the newest certificate a issued to this node that
// is valid now and whose key the key manager still holds, or nil.
func (s *Service) storedNodeTLS(ctx context.Context, a *authority) (*node.TLSCertificate, error) {
	var ders [][]byte
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		rows, err := q.Query(ctx, `SELECT der FROM ca_certificates WHERE issuer_id = ? AND profile = ? AND requester = ? AND status = 'good'
			ORDER BY created_at DESC LIMIT 5`, a.id, nodeTLSProfile, "node/"+s.nodeName())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var der []byte
			if err := rows.Scan(&der); err != nil {
				return err
			}
			ders = append(ders, der)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("stored node certificate: %w", err)
	}
	if len(ders) == 0 {
		return nil, nil
	}
	keys, err := s.tlsKeys(ctx)
	if err != nil {
		return nil, err
	}
	now := s.env.Clock.Now()
	for _, der := range ders {
		leaf, err := x509.ParseCertificate(der)
		if err != nil || now.Before(leaf.NotBefore) || !now.Before(leaf.NotAfter) {
			continue
		}
		for _, k := range keys {
			if !samePublicKey(k.Public, leaf.PublicKey) {
				continue
			}
			signer, err := s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: k.URI, Service: tlsKeyService})
			if err != nil {
				return nil, fmt.Errorf("node TLS key %s: %w", k.URI, err)
			}
			return s.nodeTLSChain(a, der, signer), nil
		}
	}
	return nil, nil
}

// tlsKeys lists this node's TLS keys.
func (s *Service) tlsKeys(ctx context.Context) ([]*hsm.KeyInfo, error) {
	prefix := s.tlsKeyPrefix()
	km, err := s.env.Keys.Backend(prefix + "x")
	if err != nil {
		return nil, err
	}
	all, err := km.ListKeys(ctx, &hsm.ListKeysRequest{Service: tlsKeyService})
	if err != nil {
		return nil, fmt.Errorf("node TLS keys: %w", err)
	}
	var out []*hsm.KeyInfo
	for _, k := range all {
		if strings.HasPrefix(k.URI, prefix) {
			out = append(out, k)
		}
	}
	return out, nil
}

func (s *Service) nodeTLSChain(a *authority, leaf []byte, key crypto.Signer) *node.TLSCertificate {
	chain := append([][]byte{leaf}, a.chain...)
	return &node.TLSCertificate{Chain: chain, Key: key, Root: a.chain[len(a.chain)-1]}
}

// issueNodeTLS makes a new key and issues the node certificate for it.
func (s *Service) issueNodeTLS(ctx context.Context, a *authority, req *node.TLSRequest, prev *node.TLSCertificate) (*node.TLSCertificate, error) {
	prof := s.profiles[nodeTLSProfile]
	if prof == nil {
		return nil, errors.New("built-in profile " + nodeTLSProfile + " missing")
	}
	now := s.env.Clock.Now().UTC()
	rnd := make([]byte, 4)
	if _, err := rand.Read(rnd); err != nil {
		return nil, err
	}
	uri := s.tlsKeyPrefix() + now.Format("20060102t150405z") + "-" + hex.EncodeToString(rnd)
	info, err := s.env.Keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: uri, Algorithm: hsm.ECDSAP256, Usage: hsm.UsageSign, Service: tlsKeyService})
	if err != nil {
		return nil, fmt.Errorf("node TLS key: %w", err)
	}
	uri = info.URI
	der, signer, err := s.signNodeTLS(ctx, a, prof, req, uri, now)
	if err != nil {
		// Nothing was served with the key; a leftover would only be found
		// and deleted at the next renewal.
		if derr := s.env.Keys.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: uri, Service: tlsKeyService}); derr != nil {
			s.env.Logger.Warn("node TLS key left after a failed issuance", "key", uri, "error", derr)
		}
		return nil, fmt.Errorf("node HTTPS certificate: %w", err)
	}
	s.deleteOldTLSKeys(ctx, uri, prev)
	return s.nodeTLSChain(a, der, signer), nil
}

func (s *Service) signNodeTLS(ctx context.Context, a *authority, prof *profile.Profile, req *node.TLSRequest, uri string, now time.Time) ([]byte, crypto.Signer, error) {
	signer, err := s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: uri, Service: tlsKeyService})
	if err != nil {
		return nil, nil, err
	}
	tmpl := &smx509.CertificateRequest{DNSNames: req.DNSNames, IPAddresses: req.IPAddresses}
	if len(req.DNSNames) > 0 {
		tmpl.Subject = pkix.Name{CommonName: req.DNSNames[0]}
	}
	csrDER, err := smx509.CreateCertificateRequest(rand.Reader, tmpl, signer)
	if err != nil {
		return nil, nil, fmt.Errorf("request: %w", err)
	}
	csr, err := smx509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, nil, fmt.Errorf("request: %w", err)
	}
	res, err := prof.Apply(profile.Input{CSR: csr, Now: now, Issuer: a.cert, CAID: a.id, Vars: s.vars})
	if err != nil {
		return nil, nil, profileError(err)
	}
	record := func(ctx context.Context, tx *store.Tx, serial string, der []byte, cert *smx509.Certificate) error {
		row := &certRow{issuer: a.id, serial: serial, subject: cert.Subject.String(), profile: prof.Name, status: "good",
			requester: "node/" + s.nodeName(), notBefore: cert.NotBefore, notAfter: cert.NotAfter, created: now, der: der}
		return s.record(ctx, tx, "system", row, append(res.Notes, "node HTTPS certificate, key "+uri))
	}
	der, cert, err := s.issueLinted(ctx, a, issuance{res: res, profile: prof.Name, record: record})
	if err != nil {
		return nil, nil, err
	}
	s.env.Logger.Info("node HTTPS certificate issued", "ca", a.id, "serial", serialHex(cert.SerialNumber),
		"not_after", cert.NotAfter.UTC().Format(time.RFC3339), "key", uri)
	return der, signer, nil
}

// deleteOldTLSKeys deletes this node's TLS keys except the new one and the
// one of the certificate it replaces, which connections made before the
// switch may still use for a moment.
func (s *Service) deleteOldTLSKeys(ctx context.Context, keep string, prev *node.TLSCertificate) {
	keys, err := s.tlsKeys(ctx)
	if err != nil {
		s.env.Logger.Warn("old node TLS keys not deleted", "error", err)
		return
	}
	for _, k := range keys {
		if k.URI == keep || prev != nil && samePublicKey(k.Public, prev.Key.Public()) {
			continue
		}
		if err := s.env.Keys.DeleteKey(ctx, &hsm.DeleteKeyRequest{URI: k.URI, Service: tlsKeyService}); err != nil {
			s.env.Logger.Warn("old node TLS key not deleted", "key", k.URI, "error", err)
		}
	}
}
