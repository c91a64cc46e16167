package seal

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/signature/ses"
)

// BenchmarkSeal1MB measures the server side of sealing a 1 MB document
// (prepare: hash, TBS_Sign; complete: check the signature, assemble,
// time-stamp, usage log and audit), with an in-memory key standing in for
// the USB key, and the verification of the result.
func BenchmarkSeal1MB(b *testing.B) {
	tn := startNode(b)
	_, adminTok := tn.account("seal-admin-1", policy.RoleSealAdmin)
	_, admin2Tok := tn.account("seal-admin-2", policy.RoleSealAdmin)
	id, _ := tn.account("zhang", policy.RoleOfficial)
	off := tn.softOfficial("张三")
	now := time.Now()
	rec := tn.makeSeal(adminTok, admin2Tok, ApplyRequest{Name: "福州市数据管理局", Kind: "official", Generate: true,
		ValidFrom: now.Add(-time.Hour), ValidTo: now.AddDate(1, 0, 0), Holders: []Holder{{Account: "zhang", Certificate: pemOf(off.cert)}}})
	acc, err := tn.n.Env().Authz.Account(context.Background(), id)
	if err != nil {
		b.Fatal(err)
	}
	p := principal(acc)
	doc := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	ctx := context.Background()
	var sealed *Sealed
	b.Run("sign", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			pr, err := tn.svc.Prepare(ctx, p, rec.ID, PrepareRequest{Format: FormatSES, Document: doc, Name: "doc", Certificate: pemOf(off.cert)})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			sig, _, err := ses.SignMessage(off.key, pr.ToBeSigned) // the USB key's part, not timed
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if sealed, err = tn.svc.Complete(ctx, p, pr.Session, CompleteRequest{Signature: sig}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if rep := tn.svc.Verify(ctx, VerifyRequest{Format: FormatSES, Document: doc, Signature: sealed.Document}); !rep.Valid {
				b.Fatal(rep.Summary)
			}
		}
	})
}

func principal(acc *authz.Account) *authz.Principal {
	return &authz.Principal{Account: acc, Roles: acc.Roles}
}
