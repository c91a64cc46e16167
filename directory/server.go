package directory

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/hashicorp/go-hclog"
	"github.com/jimlambrt/gldap"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
)

// Actions of the directory (internal/authz/policy).
const (
	actionWrite       = "directory.entry.write"
	actionReadPrivate = "directory.entry.read"
	actionImport      = "directory.import"
)

// sessionKey names a connection: gldap numbers connections per server.
type sessionKey struct{ server, conn int }

// session is what a connection has proved.
type session struct {
	tls       bool
	principal *authz.Principal
	private   bool // may read every attribute

	conn *ldapConn // kept when a bind or StartTLS replaces the session
}

func (s *Service) session(k sessionKey) *session {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	ss, ok := s.sessions[k]
	if !ok {
		ss = &session{tls: k.server == 1, conn: &ldapConn{}}
		s.sessions[k] = ss
	}
	return ss
}

func (s *Service) setSession(k sessionKey, ss *session) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if old, ok := s.sessions[k]; ok && ss.conn == nil {
		ss.conn = old.conn
	}
	if ss.conn == nil {
		ss.conn = &ldapConn{}
	}
	s.sessions[k] = ss
}

// attach returns the state of r's connection, registering the connection
// at its first request; over reports that the connection made the
// listeners hold more than directory.max_connections.
func (s *Service) attach(k sessionKey, r *gldap.Request) (c *ldapConn, over bool) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if ss, ok := s.sessions[k]; ok {
		return ss.conn, false
	}
	// Read once, under sessMu: a StartTLS later on this connection, which
	// replaces gldap's copy, goes through here first (see rawConn).
	c = &ldapConn{raw: rawConn(r)}
	if c.raw == nil && !rawConnMissing.Swap(true) {
		s.env.Logger.Error("ldap: gldap hides the connection under its requests; write and idle timeouts are off")
	}
	s.sessions[k] = &session{tls: k.server == 1, conn: c}
	return c, len(s.sessions) > s.cfg.MaxConnections
}

// ldapConn is what bounds the goroutines, memory and time one client can
// hold: gldap reads requests as fast as they come and runs each in a
// goroutine of its own, and without a deadline a response to a client
// that does not read blocks that goroutine, and every one after it, for
// ever.
type ldapConn struct {
	raw     net.Conn     // nil if gldap's layout changed (rawConn)
	ops     atomic.Int32 // operations in progress
	pending atomic.Int32 // requests received and not yet answered
	wmu     sync.Mutex   // one response at a time, under its own deadline
	closed  atomic.Bool
}

// close drops the connection: gldap's reader fails and stops, and every
// handler still writing fails at once.
func (c *ldapConn) close() {
	if c.closed.Swap(true) || c.raw == nil {
		return
	}
	_ = c.raw.Close()
}

// touch pushes the idle deadline back: the connection is in use.
func (c *ldapConn) touch(idle time.Duration) {
	if c.raw != nil {
		_ = c.raw.SetReadDeadline(time.Now().Add(idle))
	}
}

// rawConn returns the network connection under r. gldap (v0.1.14) keeps it
// in the unexported Request.conn.netConn and offers neither a listener
// hook nor per-response deadlines, so it is read by reflection; the field
// is written only when the connection is made and by StartTLS, which gldap
// runs on its reader goroutine after attach has read it. A gldap whose
// layout differs gives nil, which is logged, and TestLDAPWriteTimeout and
// TestLDAPIdleTimeout fail.
func rawConn(r *gldap.Request) net.Conn {
	v := reflect.ValueOf(r).Elem().FieldByName("conn")
	if !v.IsValid() || v.Kind() != reflect.Pointer || v.IsNil() {
		return nil
	}
	f := v.Elem().FieldByName("netConn")
	if !f.IsValid() || f.Type() != reflect.TypeFor[net.Conn]() {
		return nil
	}
	c, _ := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(net.Conn)
	return c
}

// rawConnMissing: rawConn found no connection once (logged once).
var rawConnMissing atomic.Bool

// responder is what handlers write their responses to.
type responder interface {
	Write(gldap.Response) error
}

// deadlineWriter writes each response within directory.write_timeout,
// one at a time, and closes the connection of a client that does not
// read: the response that timed out, and every one queued behind it, then
// fail at once instead of holding their goroutines.
type deadlineWriter struct {
	w       *gldap.ResponseWriter
	c       *ldapConn
	timeout time.Duration
	idle    time.Duration
}

var errConnClosed = errors.New("directory: LDAP connection closed")

func (d *deadlineWriter) Write(resp gldap.Response) error {
	d.c.wmu.Lock()
	defer d.c.wmu.Unlock()
	if d.c.closed.Load() {
		return errConnClosed
	}
	if d.c.raw != nil {
		_ = d.c.raw.SetWriteDeadline(time.Now().Add(d.timeout))
	}
	if err := d.w.Write(resp); err != nil {
		d.c.close()
		return err
	}
	d.c.touch(d.idle)
	return nil
}

// unavailableCritical returns the type of the first control of r that is
// marked critical and that the server does not implement for r's
// operation, "" if there is none: RFC 4511 §4.1.11 wants such an operation
// refused with unavailableCriticalExtension, not run without its control
// (an assertion, RFC 4528, on a modify would otherwise be dropped and the
// modify run unconditionally). Paged results (RFC 2696) is the one control
// implemented, for searches. gldap decodes a few controls it knows (paged
// results, the password policy drafts, three of Microsoft's) into types
// that drop the criticality; not implemented either, they are ignored as
// if not critical.
func unavailableCritical(r *gldap.Request) string {
	var cs []gldap.Control
	if m, err := r.GetSearchMessage(); err == nil {
		cs = m.Controls
	} else if m, err := r.GetModifyMessage(); err == nil {
		cs = m.Controls
	} else if m, err := r.GetAddMessage(); err == nil {
		cs = m.Controls
	} else if m, err := r.GetDeleteMessage(); err == nil {
		cs = m.Controls
	} else if m, err := r.GetSimpleBindMessage(); err == nil {
		cs = m.Controls
	}
	for _, c := range cs {
		switch c := c.(type) {
		case *gldap.ControlString:
			if c.Criticality {
				return c.ControlType
			}
		case *gldap.ControlManageDsaIT:
			if c.Criticality {
				return c.GetControlType()
			}
		}
	}
	return ""
}

// reply is a result of operation app (its response's application code).
func reply(r *gldap.Request, app, code int, msg string) gldap.Response {
	return r.NewResponse(gldap.WithApplicationCode(app), gldap.WithResponseCode(code), gldap.WithDiagnosticMessage(msg))
}

// newServer returns a gldap server with the directory's handlers. idx
// tells the plain listener (0) from the LDAPS one (1).
func (s *Service) newServer(idx int, startTLS *tls.Config, isTLS bool) (*gldap.Server, error) {
	srv, err := gldap.NewServer(
		gldap.WithLogger(hclog.New(&hclog.LoggerOptions{Name: "ldap", Level: hclog.Off})),
		// The first deadline: a connection that sends nothing is closed
		// after idle_timeout; each request and answer pushes it back.
		gldap.WithReadTimeout(s.cfg.IdleTimeout),
		gldap.WithOnClose(func(conn int) {
			s.sessMu.Lock()
			delete(s.sessions, sessionKey{idx, conn})
			s.sessMu.Unlock()
		}),
	)
	if err != nil {
		return nil, err
	}
	mux, err := gldap.NewMux()
	if err != nil {
		return nil, err
	}
	maxOps := int32(s.cfg.MaxOperations)
	// app is the application code of the operation's response (0: unbind,
	// which has none).
	h := func(app int, fn func(k sessionKey, w responder, r *gldap.Request)) gldap.HandlerFunc {
		return func(gw *gldap.ResponseWriter, r *gldap.Request) {
			k := sessionKey{idx, r.ConnectionID()}
			c, over := s.attach(k, r)
			w := &deadlineWriter{w: gw, c: c, timeout: s.cfg.WriteTimeout, idle: s.cfg.IdleTimeout}
			// gldap runs handlers in goroutines of their own, outside its
			// panic recovery: a panic here must not take the node down.
			defer func() {
				if p := recover(); p != nil {
					s.env.Logger.Error("ldap handler panic", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
					_ = w.Write(r.NewResponse(gldap.WithResponseCode(gldap.ResultOther), gldap.WithDiagnosticMessage("internal error")))
				}
			}()
			if c.closed.Load() {
				return
			}
			defer c.pending.Add(-1)
			if c.pending.Add(1) > 4*maxOps {
				// Like OpenLDAP's conn_max_pending: the client sends
				// faster than it reads its answers.
				c.close()
				return
			}
			c.touch(s.cfg.IdleTimeout)
			if over {
				if app != 0 {
					_ = w.Write(reply(r, app, gldap.ResultBusy, "too many connections"))
				}
				c.close()
				return
			}
			if app == 0 {
				fn(k, w, r)
				return
			}
			defer c.ops.Add(-1)
			if c.ops.Add(1) > maxOps {
				_ = w.Write(reply(r, app, gldap.ResultBusy, fmt.Sprintf("more than %d operations in progress on this connection", maxOps)))
				return
			}
			if oid := unavailableCritical(r); oid != "" {
				if app == gldap.ApplicationBindResponse {
					// RFC 4511 §4.2.1: a bind request, answered or not,
					// ends the authentication of earlier binds.
					s.setSession(k, &session{tls: s.session(k).tls})
				}
				_ = w.Write(reply(r, app, gldap.ResultUnavailableCriticalExtension, "critical control "+oid+" is not supported"))
				return
			}
			fn(k, w, r)
		}
	}
	errs := []error{
		mux.Bind(h(gldap.ApplicationBindResponse, s.handleBind)),
		mux.Search(h(gldap.ApplicationSearchResultDone, s.handleSearch)),
		mux.Add(h(gldap.ApplicationAddResponse, s.handleAdd)),
		mux.Modify(h(gldap.ApplicationModifyResponse, s.handleModify)),
		mux.Delete(h(gldap.ApplicationDelResponse, s.handleDelete)),
		mux.Unbind(h(0, func(sessionKey, responder, *gldap.Request) {})),
		mux.ExtendedOperation(h(gldap.ApplicationExtendedResponse, func(k sessionKey, w responder, r *gldap.Request) {
			s.handleStartTLS(k, w, r, startTLS, isTLS)
		}), gldap.ExtendedOperationStartTLS),
		mux.DefaultRoute(h(gldap.ApplicationExtendedResponse, func(_ sessionKey, w responder, r *gldap.Request) {
			_ = w.Write(r.NewResponse(gldap.WithResponseCode(gldap.ResultUnwillingToPerform), gldap.WithDiagnosticMessage("operation not supported")))
		})),
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := srv.Router(mux); err != nil {
		return nil, err
	}
	return srv, nil
}

func (s *Service) handleStartTLS(k sessionKey, w responder, r *gldap.Request, cfg *tls.Config, isTLS bool) {
	resp := r.NewExtendedResponse(gldap.WithResponseCode(gldap.ResultSuccess))
	resp.SetResponseName(gldap.ExtendedOperationStartTLS)
	switch {
	case cfg == nil:
		resp.SetResultCode(gldap.ResultUnavailable)
		resp.SetDiagnosticMessage("TLS is not configured on this node")
		_ = w.Write(resp)
		return
	case isTLS || s.session(k).tls:
		// RFC 4511 §4.14.1: StartTLS on a TLS connection is an
		// operationsError.
		resp.SetResultCode(gldap.ResultOperationsError)
		resp.SetDiagnosticMessage("TLS already established")
		_ = w.Write(resp)
		return
	}
	if err := w.Write(resp); err != nil {
		return
	}
	if err := r.StartTLS(cfg); err != nil {
		s.env.Logger.Info("ldap StartTLS failed", "error", err)
		return
	}
	// RFC 4513 §3.1.5: whatever the connection had proved before TLS is
	// kept only if the server says so; here it starts anonymous.
	s.setSession(k, &session{tls: true})
}

// handleBind: anonymous (empty name and password) reads public attributes;
// a name with an empty password is an unauthenticated bind and is refused
// (RFC 4513 §5.1.2, §6.3.1); otherwise the password is a govtrust API token
// of the account the DN names (cn=<account>,ou=accounts,<base>).
func (s *Service) handleBind(k sessionKey, w responder, r *gldap.Request) {
	resp := r.NewBindResponse(gldap.WithResponseCode(gldap.ResultInvalidCredentials))
	m, err := r.GetSimpleBindMessage()
	if err != nil {
		resp.SetResultCode(gldap.ResultAuthMethodNotSupported)
		resp.SetDiagnosticMessage("only simple bind is supported")
		_ = w.Write(resp)
		return
	}
	ss := s.session(k)
	switch {
	case m.UserName == "" && m.Password == "":
		s.setSession(k, &session{tls: ss.tls})
		resp.SetResultCode(gldap.ResultSuccess)
	case m.Password == "":
		s.setSession(k, &session{tls: ss.tls})
		resp.SetResultCode(gldap.ResultUnwillingToPerform)
		resp.SetDiagnosticMessage("unauthenticated bind (a name without a password) is refused")
	case !ss.tls && !s.loopbackOnly.Load():
		resp.SetResultCode(gldap.ResultConfidentialityRequired)
		resp.SetDiagnosticMessage("use StartTLS or LDAPS before a simple bind")
	default:
		p, err := s.authenticate(context.Background(), m.UserName, string(m.Password))
		if err != nil {
			s.setSession(k, &session{tls: ss.tls})
			resp.SetDiagnosticMessage("invalid credentials")
			break
		}
		d := s.env.Authz.Engine().Decide(policy.Request{Principal: p.Policy(), Action: actionReadPrivate,
			Resource: policy.Resource{Type: "directory", ID: s.baseDN}, Context: map[string]string{"via": p.Via}})
		s.setSession(k, &session{tls: ss.tls, principal: p, private: d.Allow})
		resp.SetResultCode(gldap.ResultSuccess)
	}
	_ = w.Write(resp)
}

// authenticate checks a bind: dn must be cn=<account>,ou=accounts,<base>
// and token an API token of that account.
func (s *Service) authenticate(ctx context.Context, dn, token string) (*authz.Principal, error) {
	norm, parent, err := normalizeDN(dn)
	if err != nil {
		return nil, err
	}
	want, _, _ := normalizeDN("ou=accounts," + s.baseDN)
	name, ok := strings.CutPrefix(strings.TrimSuffix(norm, ","+parent), "cn=")
	if !ok || parent != want {
		return nil, errors.New("bind DN is not cn=<account>,ou=accounts,<base>")
	}
	if s.env.Authz == nil {
		return nil, authz.ErrUnauthenticated
	}
	p, err := s.env.Authz.AuthenticateBearer(ctx, token)
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(p.Account.Name, name) || p.Account.Disabled {
		return nil, authz.ErrUnauthenticated
	}
	return p, nil
}

// visible returns the attribute filter of a session.
func (s *Service) visible(ss *session) func(string) bool {
	if ss.private {
		return func(string) bool { return true }
	}
	return func(a string) bool { return s.public[a] }
}

// rootDSE is the entry of the empty DN (RFC 4512 §5.1).
func (s *Service) rootDSE() *Entry {
	e := &Entry{Attrs: map[string][][]byte{}}
	e.setStr("objectClass", "top")
	e.setStr("namingContexts", s.baseDN)
	e.setStr("supportedLDAPVersion", "3")
	e.setStr("supportedControl", gldap.ControlTypePaging)
	e.setStr("supportedExtension", string(gldap.ExtendedOperationStartTLS))
	e.setStr("vendorName", "govtrust")
	return e
}

// handleSearch answers a search from the in-memory tree with the
// session's view of attributes, enforcing the size and time limits (the
// lower of the client's and the server's, RFC 4511 §4.5.1.4-5) and paging
// (RFC 2696).
func (s *Service) handleSearch(k sessionKey, w responder, r *gldap.Request) {
	done := r.NewSearchDoneResponse(gldap.WithResponseCode(gldap.ResultSuccess))
	m, err := r.GetSearchMessage()
	if err != nil {
		done.SetResultCode(gldap.ResultProtocolError)
		_ = w.Write(done)
		return
	}
	ss := s.session(k)
	visible := s.visible(ss)
	norm, _, err := normalizeDN(m.BaseDN)
	if err != nil {
		done.SetResultCode(gldap.ResultInvalidDNSyntax)
		done.SetDiagnosticMessage("invalid base DN")
		_ = w.Write(done)
		return
	}
	if norm == "" && m.Scope == gldap.BaseObject {
		s.writeEntry(w, r, "", s.rootDSE(), m, func(string) bool { return true })
		_ = w.Write(done)
		return
	}
	if norm == "" {
		norm = s.base
	}
	if !underBase(norm, s.base) {
		done.SetResultCode(gldap.ResultNoSuchObject)
		_ = w.Write(done)
		return
	}
	f, err := compileFilter(m.Filter)
	if err != nil {
		done.SetResultCode(gldap.ResultProtocolError)
		done.SetDiagnosticMessage("unsupported or malformed filter")
		_ = w.Write(done)
		return
	}
	limit := time.Duration(s.cfg.TimeLimit)
	if m.TimeLimit > 0 && time.Duration(m.TimeLimit)*time.Second < limit {
		limit = time.Duration(m.TimeLimit) * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()

	var paging *gldap.ControlPaging
	for _, c := range m.Controls {
		if p, ok := c.(*gldap.ControlPaging); ok {
			paging = p
		}
	}
	// The tree is walked only as far as the answer needs: start entries
	// skipped (paging), size sent, and one more to tell whether the limit
	// cut the answer short.
	start, size := 0, s.cfg.SizeLimit
	if paging != nil {
		// RFC 2696 §3: the page size replaces the size limit per page.
		var ok bool
		if start, ok = s.pageStart(paging.Cookie, m); !ok {
			done.SetResultCode(gldap.ResultUnwillingToPerform)
			done.SetDiagnosticMessage("invalid paging cookie")
			_ = w.Write(done)
			return
		}
		if n := int(paging.PagingSize); n > 0 && n < size {
			size = n
		}
		if paging.PagingSize == 0 && len(paging.Cookie) > 0 {
			// A page size of 0 abandons the paged search (RFC 2696 §3).
			done.SetControls(&gldap.ControlPaging{})
			_ = w.Write(done)
			return
		}
	} else if m.SizeLimit > 0 && int(m.SizeLimit) < size {
		size = int(m.SizeLimit)
	}
	want := math.MaxInt
	if start < math.MaxInt-size-1 {
		want = start + size + 1
	}
	found, err := s.tree.search(ctx, norm, int(m.Scope), f, visible, want)
	switch {
	case errors.Is(err, errNoSuchObject):
		done.SetResultCode(gldap.ResultNoSuchObject)
		done.SetMatchedDN(s.baseDN)
		_ = w.Write(done)
		return
	case err != nil:
		done.SetResultCode(gldap.ResultTimeLimitExceeded)
	}
	found = found[min(start, len(found)):]
	more := len(found) > size
	if more {
		found = found[:size]
	}
	switch {
	case paging != nil:
		next := &gldap.ControlPaging{}
		if more {
			next.Cookie = s.pageCookie(start+size, m)
		}
		done.SetControls(next)
	case more:
		done.SetResultCode(gldap.ResultSizeLimitExceeded)
	}
	for _, e := range found {
		if ctx.Err() != nil {
			done.SetResultCode(gldap.ResultTimeLimitExceeded)
			break
		}
		if err := s.writeEntry(w, r, e.DN, e, m, visible); err != nil {
			return
		}
	}
	_ = w.Write(done)
}

// writeEntry sends e with the attributes m asks for that visible allows.
func (s *Service) writeEntry(w responder, r *gldap.Request, dn string, e *Entry, m *gldap.SearchMessage, visible func(string) bool) error {
	resp := r.NewSearchResponseEntry(dn)
	all := len(m.Attributes) == 0 || slices.Contains(m.Attributes, "*")
	var want map[string]bool
	if !all {
		want = map[string]bool{}
		for _, a := range m.Attributes {
			want[schemaName(a)] = true
		}
	}
	for _, name := range e.sortedNames() {
		if !visible(name) || (!all && !want[name]) {
			continue
		}
		vals := []string{}
		if !m.TypesOnly {
			for _, v := range e.Attrs[name] {
				vals = append(vals, string(v))
			}
		}
		resp.AddAttribute(wireName(name), vals)
	}
	return w.Write(resp)
}

// pageCookie binds an offset to the search it belongs to, so a cookie
// cannot be replayed against another search.
func (s *Service) pageCookie(offset int, m *gldap.SearchMessage) []byte {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%s\x00%s", s.owner, m.Scope, m.BaseDN, m.Filter)))
	return fmt.Appendf(nil, "%d:%x", offset, h[:8])
}

func (s *Service) pageStart(cookie []byte, m *gldap.SearchMessage) (int, bool) {
	if len(cookie) == 0 {
		return 0, true
	}
	off, _, ok := strings.Cut(string(cookie), ":")
	n, err := strconv.Atoi(off)
	if !ok || err != nil || n < 0 || string(s.pageCookie(n, m)) != string(cookie) {
		return 0, false
	}
	return n, true
}

// writer returns the principal allowed to write, or answers the request
// with the refusal and returns nil.
func (s *Service) writer(ctx context.Context, k sessionKey, dn string, w responder, r *gldap.Request, appCode int) *authz.Principal {
	ss := s.session(k)
	refuse := func(code int, msg string) {
		_ = w.Write(r.NewResponse(gldap.WithApplicationCode(appCode), gldap.WithResponseCode(code), gldap.WithDiagnosticMessage(msg)))
	}
	if ss.principal == nil {
		refuse(gldap.ResultInsufficientAccessRights, "anonymous clients may not write")
		return nil
	}
	if _, err := s.env.Authz.Authorize(ctx, ss.principal, actionWrite, policy.Resource{Type: "directory", ID: dn}); err != nil {
		refuse(gldap.ResultInsufficientAccessRights, "not allowed")
		return nil
	}
	norm, _, err := normalizeDN(dn)
	if err != nil {
		refuse(gldap.ResultInvalidDNSyntax, "invalid DN")
		return nil
	}
	caNorm, _, _ := normalizeDN("ou=ca," + s.baseDN)
	if !underBase(norm, s.base) || norm == s.base {
		refuse(gldap.ResultUnwillingToPerform, "outside the directory's naming context")
		return nil
	}
	if underBase(norm, caNorm) {
		// The CA's entries follow the CA through the publisher; a write here
		// would diverge from what the CA serves over HTTP.
		refuse(gldap.ResultUnwillingToPerform, "entries under ou=ca are maintained by the CA publisher")
		return nil
	}
	return ss.principal
}

// kindOf guesses an entry's kind from its object classes.
func kindOf(e *Entry) string {
	for _, v := range e.Get("objectClass") {
		switch strings.ToLower(string(v)) {
		case "inetorgperson", "person", "organizationalperson":
			return KindPerson
		case "organizationalunit":
			return KindDepartment
		case "applicationprocess":
			return KindApplication
		}
	}
	return KindContainer
}

// ldapCode maps the errors of an LDAP write to result codes (STYLE.md:
// one place per edge).
func ldapCode(err error) (int, string) {
	switch {
	case errors.Is(err, errExists):
		return gldap.ResultEntryAlreadyExists, "entry already exists"
	case errors.Is(err, errNoSuchObject):
		return gldap.ResultNoSuchObject, "no such entry"
	case errors.Is(err, errNoParent):
		return gldap.ResultNoSuchObject, "parent entry does not exist"
	case errors.Is(err, errNonLeaf):
		return gldap.ResultNotAllowedOnNonLeaf, "entry has children"
	case errors.Is(err, ErrInvalidDN):
		return gldap.ResultInvalidDNSyntax, "invalid DN"
	case errors.Is(err, errNoObjectClass):
		return gldap.ResultObjectClassViolation, "objectClass required"
	}
	return gldap.ResultOther, "internal error"
}

var (
	errExists        = errors.New("directory: entry exists")
	errNoParent      = errors.New("directory: parent does not exist")
	errNonLeaf       = errors.New("directory: entry has children")
	errNoObjectClass = errors.New("directory: entry without objectClass")
)

func (s *Service) handleAdd(k sessionKey, w responder, r *gldap.Request) {
	m, err := r.GetAddMessage()
	if err != nil {
		_ = w.Write(r.NewResponse(gldap.WithApplicationCode(gldap.ApplicationAddResponse), gldap.WithResponseCode(gldap.ResultProtocolError)))
		return
	}
	ctx := context.Background()
	p := s.writer(ctx, k, m.DN, w, r, gldap.ApplicationAddResponse)
	if p == nil {
		return
	}
	rec := s.writeRecord(p, "directory.entry.add", m.DN)
	err = s.write(authz.WithPrincipal(ctx, p), rec, func(b *batch) error {
		e, err := newEntry(m.DN, "", nil...)
		if err != nil {
			return err
		}
		for _, a := range m.Attributes {
			for _, v := range a.Vals {
				n := schemaName(a.Type)
				e.Attrs[n] = append(e.Attrs[n], []byte(v))
			}
		}
		if len(e.Get("objectClass")) == 0 {
			return errNoObjectClass
		}
		e.Kind = kindOf(e)
		rec.Details["attributes"] = e.sortedNames()
		if old, err := b.get(ctx, e.norm); err != nil || old != nil {
			return errors.Join(err, errExists)
		}
		if par, err := b.get(ctx, e.parent); err != nil || par == nil {
			return errors.Join(err, errNoParent)
		}
		return b.put(ctx, e)
	})
	s.answerWrite(w, r, gldap.ApplicationAddResponse, err)
}

func (s *Service) handleModify(k sessionKey, w responder, r *gldap.Request) {
	m, err := r.GetModifyMessage()
	if err != nil {
		_ = w.Write(r.NewModifyResponse(gldap.WithResponseCode(gldap.ResultProtocolError)))
		return
	}
	changes := make([][][]byte, len(m.Changes))
	for i, c := range m.Changes {
		if changes[i], err = modValues(c.Modification.Vals); err != nil {
			_ = w.Write(r.NewModifyResponse(gldap.WithResponseCode(gldap.ResultProtocolError), gldap.WithDiagnosticMessage("malformed modification values")))
			return
		}
	}
	ctx := context.Background()
	p := s.writer(ctx, k, m.DN, w, r, gldap.ApplicationModifyResponse)
	if p == nil {
		return
	}
	rec := s.writeRecord(p, "directory.entry.modify", m.DN)
	var names []string
	err = s.write(authz.WithPrincipal(ctx, p), rec, func(b *batch) error {
		norm, _, err := normalizeDN(m.DN)
		if err != nil {
			return err
		}
		e, err := b.get(ctx, norm)
		if err != nil || e == nil {
			return errors.Join(err, errNoSuchObject)
		}
		for i, c := range m.Changes {
			n := schemaName(c.Modification.Type)
			names = append(names, n)
			vals := changes[i]
			switch c.Operation {
			case gldap.AddAttribute:
				e.Attrs[n] = append(e.Attrs[n], vals...)
			case gldap.ReplaceAttribute:
				e.set(n, vals...)
			case gldap.DeleteAttribute:
				if len(vals) == 0 {
					e.set(n)
					continue
				}
				e.set(n, slices.DeleteFunc(e.Attrs[n], func(v []byte) bool {
					return slices.ContainsFunc(vals, func(d []byte) bool { return string(fold(n, d)) == string(fold(n, v)) })
				})...)
			}
		}
		if len(e.Get("objectClass")) == 0 {
			return errNoObjectClass
		}
		rec.Details["attributes"] = names
		return b.put(ctx, e)
	})
	s.answerWrite(w, r, gldap.ApplicationModifyResponse, err)
}

// modValues returns the values of one modification. gldap (v0.1.14) does
// not decode them: it hands over the content of the modification's SET OF
// values as one string, the BER of each value one after the other (and an
// empty string for no values).
func modValues(raw []string) ([][]byte, error) {
	var out [][]byte
	for _, set := range raw {
		rd := strings.NewReader(set)
		for rd.Len() > 0 {
			p, err := ber.ReadPacket(rd)
			if err != nil {
				return nil, err
			}
			if p.ClassType != ber.ClassUniversal || p.TagType != ber.TypePrimitive || p.Tag != ber.TagOctetString {
				return nil, errors.New("directory: modification value is not an OCTET STRING")
			}
			out = append(out, slices.Clone(p.Data.Bytes()))
		}
	}
	return out, nil
}

func (s *Service) handleDelete(k sessionKey, w responder, r *gldap.Request) {
	m, err := r.GetDeleteMessage()
	if err != nil {
		_ = w.Write(r.NewResponse(gldap.WithApplicationCode(gldap.ApplicationDelResponse), gldap.WithResponseCode(gldap.ResultProtocolError)))
		return
	}
	ctx := context.Background()
	p := s.writer(ctx, k, m.DN, w, r, gldap.ApplicationDelResponse)
	if p == nil {
		return
	}
	err = s.write(authz.WithPrincipal(ctx, p), s.writeRecord(p, "directory.entry.delete", m.DN), func(b *batch) error {
		norm, _, err := normalizeDN(m.DN)
		if err != nil {
			return err
		}
		if e, err := b.get(ctx, norm); err != nil || e == nil {
			return errors.Join(err, errNoSuchObject)
		}
		if kids, err := b.hasChildren(ctx, norm); err != nil || kids {
			return errors.Join(err, errNonLeaf)
		}
		return b.remove(ctx, norm)
	})
	s.answerWrite(w, r, gldap.ApplicationDelResponse, err)
}

// writeRecord is the audit record of an LDAP write; the write adds the
// attributes it touched to its details before it is appended.
func (s *Service) writeRecord(p *authz.Principal, action, dn string) audit.Record {
	return audit.Record{Actor: p.Actor(), Action: action, Object: "ldap/" + dn, Outcome: audit.Success, Details: map[string]any{"via": "ldap"}}
}

func (s *Service) answerWrite(w responder, r *gldap.Request, app int, err error) {
	code, msg := gldap.ResultSuccess, ""
	if err != nil {
		code, msg = ldapCode(err)
		if code == gldap.ResultOther {
			s.env.Logger.Error("ldap write failed", "error", err)
		}
	}
	if app == gldap.ApplicationModifyResponse {
		_ = w.Write(r.NewModifyResponse(gldap.WithResponseCode(code), gldap.WithDiagnosticMessage(msg)))
		return
	}
	_ = w.Write(r.NewResponse(gldap.WithApplicationCode(app), gldap.WithResponseCode(code), gldap.WithDiagnosticMessage(msg)))
}
