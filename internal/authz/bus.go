package authz

import (
	"context"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz/policy"
)

// Message is a bus message as the security middleware sees it, independent
// of the broker (the exchange adapts NATS messages to it).
type Message struct {
	Subject string
	Header  map[string][]string
	Data    []byte
}

// BusHandler handles one message.
type BusHandler func(ctx context.Context, m *Message) error

// Bus wraps a bus handler with the same authentication, decision and audit as
// HTTP routes: the message's Authorization header carries the sender's bearer
// token; resource finds what the message acts on (nil: the platform). A
// refused message returns ErrUnauthenticated or ErrForbidden and never reaches
// h; the exchange dead-letters it with that reason.
func (s *Service) Bus(action string, resource func(*Message) (policy.Resource, error), h BusHandler) BusHandler {
	if err := (Rule{Action: action}).check(); err != nil {
		panic("authz: bus handler: " + err.Error())
	}
	return func(ctx context.Context, m *Message) error {
		var tok string
		if v := m.Header["Authorization"]; len(v) == 1 {
			var ok bool
			if tok, ok = bearerToken(v[0]); !ok {
				tok = v[0] // a bare token, as before
			}
		}
		p, err := s.AuthenticateBearer(ctx, tok)
		if err != nil {
			s.deny(ctx, "anonymous", action, "subject/"+m.Subject, "no valid credential", nil, "subject", m.Subject)
			return ErrUnauthenticated
		}
		res := platformResource
		if resource != nil {
			if res, err = resource(m); err != nil {
				return err
			}
		}
		d, err := s.Authorize(ctx, p, action, res, "subject", m.Subject)
		if err != nil {
			return err
		}
		dec := &audit.Decision{Action: action, Object: res.Type + "/" + res.ID, Via: p.Via, Policies: d.Policies}
		ctx = audit.WithDecision(WithPrincipal(ctx, p), dec)
		err = h(ctx, m)
		if err != nil || !dec.Written() {
			outcome := audit.Success
			details := map[string]any{"subject": m.Subject}
			if err != nil {
				outcome, details["error"] = audit.Failure, err.Error()
			}
			if _, aerr := s.log.Write(ctx, s.db, audit.Record{Actor: p.Actor(), Action: action, Object: dec.Object, Outcome: outcome, Details: details}); aerr != nil && err == nil {
				return aerr
			}
		}
		return err
	}
}
