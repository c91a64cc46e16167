package directory_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/govtrust/govtrust/directory"
	"github.com/govtrust/govtrust/internal/testenv"
)

// searchPacket is a search request as a client pipelining without a
// library sends it: scope subtree, every attribute.
func searchPacket(id int64, base string, timeLimit int64) []byte {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
	req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchRequest, nil, "Search Request")
	req.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, base, "Base DN"))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 2, "Scope"))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 0, "Deref"))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "Size"))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, timeLimit, "Time"))
	req.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, "TypesOnly"))
	f, _ := ldap.CompileFilter("(objectClass=*)")
	req.AppendChild(f)
	req.AppendChild(ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes"))
	p.AppendChild(req)
	return p.Bytes()
}

// dialSlowReader connects with a 4 KiB receive buffer, so that a client
// that does not read stops the server's writes after little data.
func dialSlowReader(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// bigDepartment loads n applications with 1 KiB descriptions under
// ou=big,ou=departments: a subtree search of it answers about n KiB.
func bigDepartment(t *testing.T, tn *testNode, n int) string {
	t.Helper()
	im := &directory.Import{Departments: []directory.Department{{Code: "big", Name: "Big"}}}
	for i := range n {
		im.Applications = append(im.Applications, directory.Application{Name: fmt.Sprintf("app-%d", i), Department: "big",
			Description: strings.Repeat("x", 1024)})
	}
	if _, err := tn.dirSvc.Load(context.Background(), "test", im); err != nil {
		t.Fatal(err)
	}
	return "ou=big,ou=departments,dc=govtrust,dc=local"
}

// goroutinesBackTo waits up to limit for the process to run no more than
// want goroutines, and returns how many it ran at the end.
func goroutinesBackTo(want int, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serverClosed reads c (discarding what the server had sent) until the
// server closes it, and reports whether it did within limit.
func serverClosed(c net.Conn, limit time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// assertAnswers checks that the server still answers a new client.
func assertAnswers(t *testing.T, addr string) {
	t.Helper()
	l, err := ldap.DialURL("ldap://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	res, err := l.Search(ldap.NewSearchRequest("ou=ca,dc=govtrust,dc=local", ldap.ScopeSingleLevel, 0, 0, 0, false, "(cn=sm2-root)", []string{"cn"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("server stopped answering: %v", err)
	}
}

// TestLDAPPipelinedUnread: one anonymous connection pipelines 3,000
// searches and never reads an answer. The server closes it once four
// times directory.max_operations requests wait for their answers, and the
// goroutines the requests took are released, instead of one per request
// blocking for ever on its answer.
func TestLDAPPipelinedUnread(t *testing.T) {
	tn := startNode(t, t.TempDir(), "", "")
	assertAnswers(t, tn.ldap)
	before := runtime.NumGoroutine()
	c := dialSlowReader(t, tn.ldap)
	var out []byte
	for i := int64(1); i <= 3000; i++ {
		out = append(out, searchPacket(i, "ou=ca,dc=govtrust,dc=local", 1)...)
	}
	// The server may close the connection while the requests are still
	// being written.
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write(out)
	if n := goroutinesBackTo(before+20, 10*time.Second); n > before+20 {
		t.Errorf("%d goroutines 10 s after 3,000 unread pipelined searches, %d before", n, before)
	}
	if !serverClosed(c, 30*time.Second) {
		t.Error("the connection of a client that does not read its answers is still open")
	}
	assertAnswers(t, tn.ldap)
}

// TestLDAPWriteTimeout: a client that sends a few searches with large
// answers and reads none of them is disconnected after
// directory.write_timeout: when it reads at last, it gets what the socket
// buffers held and then the end of the connection, not the rest of the
// answers.
func TestLDAPWriteTimeout(t *testing.T) {
	tn := startNode(t, t.TempDir(), "  write_timeout: 1s\n  size_limit: 5000\n", "")
	base := bigDepartment(t, tn, 2000)
	c := dialSlowReader(t, tn.ldap)
	var out []byte
	for i := int64(1); i <= 4; i++ {
		out = append(out, searchPacket(i, base, 0)...)
	}
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	// About 8 MiB of answers: far more than the socket buffers hold.
	time.Sleep(4 * time.Second)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	entries, done := 0, 0
	var err error
	for {
		var p *ber.Packet
		if p, err = ber.ReadPacket(r); err != nil {
			break
		}
		switch p.Children[1].Tag {
		case ldap.ApplicationSearchResultEntry:
			entries++
		case ldap.ApplicationSearchResultDone:
			done++
		}
	}
	t.Logf("read %d entries and %d results before %v", entries, done, err)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || done == 4 {
		t.Errorf("a client that did not read for 4 s is still connected (%d of 4 searches answered, %v)", done, err)
	}
	assertAnswers(t, tn.ldap)
}

// TestLDAPBusyAboveMaxOperations: with directory.max_operations: 2, of six
// pipelined searches taking a while to answer, those received while two
// are in progress are answered busy (51); every request is answered, and
// the others in full.
func TestLDAPBusyAboveMaxOperations(t *testing.T) {
	tn := startNode(t, t.TempDir(), "  max_operations: 2\n  size_limit: 5000\n", "")
	base := bigDepartment(t, tn, 2000)
	c := dialSlowReader(t, tn.ldap)
	var out []byte
	for i := int64(1); i <= 6; i++ {
		out = append(out, searchPacket(i, base, 0)...)
	}
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the first answers fill the socket buffers
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	entries, codes := map[int64]int{}, map[int64]int64{}
	for len(codes) < 6 {
		p, err := ber.ReadPacket(r)
		if err != nil {
			t.Fatalf("after %d results: %v", len(codes), err)
		}
		id, op := p.Children[0].Value.(int64), p.Children[1]
		switch op.Tag {
		case ldap.ApplicationSearchResultEntry:
			entries[id]++
		case ldap.ApplicationSearchResultDone:
			codes[id] = op.Children[0].Value.(int64)
		default:
			t.Fatalf("unexpected response %d", op.Tag)
		}
	}
	busy := 0
	for id, code := range codes {
		switch {
		case code == ldap.LDAPResultBusy && entries[id] == 0:
			busy++
		case code == ldap.LDAPResultSuccess && entries[id] == 2001:
		default:
			t.Errorf("search %d: result %d with %d entries", id, code, entries[id])
		}
	}
	if busy == 0 || busy > 4 {
		t.Errorf("%d searches answered busy, want 1 to 4 (results %v)", busy, codes)
	}
	t.Logf("%d of 6 answered busy", busy)
}

// TestLDAPMaxConnections: with directory.max_connections: 2, a third
// connection is answered busy at its first request and closed; once one
// of the two hangs up, a new one is served.
func TestLDAPMaxConnections(t *testing.T) {
	tn := startNode(t, t.TempDir(), "  max_connections: 2\n", "")
	search := func(l *ldap.Conn) error {
		_, err := l.Search(ldap.NewSearchRequest("ou=ca,dc=govtrust,dc=local", ldap.ScopeSingleLevel, 0, 0, 0, false, "(cn=sm2-root)", []string{"cn"}, nil))
		return err
	}
	var held []*ldap.Conn
	for range 2 {
		l, err := ldap.DialURL("ldap://" + tn.ldap)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if err := search(l); err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
	}
	third, err := ldap.DialURL("ldap://" + tn.ldap)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if err := search(third); !ldap.IsErrorWithCode(err, ldap.LDAPResultBusy) {
		t.Errorf("third connection: %v, want busy (51)", err)
	}
	held[0].Close()
	eventually(t, 5*time.Second, "a new connection served after one closed", func() error {
		l, err := ldap.DialURL("ldap://" + tn.ldap)
		if err != nil {
			return err
		}
		defer l.Close()
		return search(l)
	})
}

// TestLDAPIdleTimeout: a connection that sends nothing, and one that
// stops sending after a search, are closed after directory.idle_timeout;
// one in use is not.
func TestLDAPIdleTimeout(t *testing.T) {
	tn := startNode(t, t.TempDir(), "  idle_timeout: 1s\n", "")
	silent, err := net.Dial("tcp", tn.ldap)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	l, err := ldap.DialURL("ldap://" + tn.ldap)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for range 6 {
		if _, err := l.Search(ldap.NewSearchRequest("ou=ca,dc=govtrust,dc=local", ldap.ScopeSingleLevel, 0, 0, 0, false, "(cn=sm2-root)", []string{"cn"}, nil)); err != nil {
			t.Fatalf("a connection in use was closed: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if !serverClosed(silent, 3*time.Second) {
		t.Error("a connection that never sent anything is still open")
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := l.Search(ldap.NewSearchRequest("ou=ca,dc=govtrust,dc=local", ldap.ScopeSingleLevel, 0, 0, 0, false, "(cn=sm2-root)", []string{"cn"}, nil)); err == nil {
		t.Error("a connection idle for longer than idle_timeout still answered")
	}
}

// TestLDAPCriticalControls: RFC 4511 §4.1.11. Every operation carrying a
// critical control the server does not implement is refused with
// unavailableCriticalExtension (12) and not performed: a server-side sort
// or ManageDsaIT on a search, an assertion (RFC 4528) on a modify, unknown
// controls on add, delete and bind. The same controls not marked critical
// are ignored, and a critical paged-results control is honoured.
func TestLDAPCriticalControls(t *testing.T) {
	tn := startNode(t, t.TempDir(), "", "")
	if _, err := tn.dirSvc.Load(context.Background(), "test", &directory.Import{
		Departments: []directory.Department{{Code: "gaj", Name: "市公安局"}},
		People:      []directory.Person{{UID: "zhangsan", Name: "张三", Department: "gaj", Title: "deputy"}},
	}); err != nil {
		t.Fatal(err)
	}
	url := "ldap://" + tn.ldap
	base := "dc=govtrust,dc=local"
	person := "uid=zhangsan,ou=gaj,ou=departments," + base
	admin := []string{"-D", "cn=sysadmin,ou=accounts," + base, "-w", tn.tokens["sysadmin"]}

	t.Run("ldapsearch", func(t *testing.T) {
		for _, tc := range []struct {
			ext  []string
			want string // "" for success
		}{
			{[]string{"-E", "!sss=cn"}, "Critical extension is unavailable (12)"},
			{[]string{"-E", "sss=cn"}, ""},
			{[]string{"-MM"}, "Critical extension is unavailable (12)"},
			{[]string{"-M"}, ""},
			{[]string{"-E", "!pr=2/noprompt"}, ""},
		} {
			args := append(slices.Clone(tc.ext), "-b", "ou=ca,"+base, "(objectClass=*)", "cn")
			out, err := ldapsearch(t, url, args...)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("ldapsearch %v: %v", tc.ext, err)
			case tc.want == "" && !strings.Contains(out, "cn: sm2-root"):
				t.Errorf("ldapsearch %v: no entries:\n%s", tc.ext, out)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("ldapsearch %v: %v\n%s; want %q", tc.ext, err, out, tc.want)
			}
		}
	})

	title := func() string {
		t.Helper()
		out, err := ldapsearch(t, url, "-b", person, "-s", "base", "(objectClass=*)", "title")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	t.Run("ldapmodify assertion", func(t *testing.T) {
		modify := func(ext ...string) (string, error) {
			args := append([]string{"-x", "-H", url}, admin...)
			cmd := exec.Command(testenv.LookPath(t, "ldapmodify"), append(args, ext...)...)
			cmd.Stdin = strings.NewReader("dn: " + person + "\nchangetype: modify\nreplace: title\ntitle: chief\n")
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		// The assertion does not hold: were it ignored, the modify would run.
		out, err := modify("-e", "!assert=(title=director)")
		if err == nil || !strings.Contains(out, "Critical extension is unavailable (12)") {
			t.Errorf("ldapmodify with a critical assertion: %v\n%s", err, out)
		}
		if got := title(); !strings.Contains(got, "title: deputy\n") {
			t.Errorf("the modify ran although its critical assertion was refused:\n%s", got)
		}
		if out, err := modify("-e", "assert=(title=director)"); err != nil {
			t.Errorf("ldapmodify with a non-critical assertion (ignored): %v\n%s", err, out)
		}
		if got := title(); !strings.Contains(got, "title: chief\n") {
			t.Errorf("modify with a non-critical control not performed:\n%s", got)
		}
	})

	t.Run("add, delete and bind", func(t *testing.T) {
		l, err := ldap.DialURL(url)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		unknown := []ldap.Control{ldap.NewControlString("1.3.6.1.4.1.99999.1", true, "")}
		bind := &ldap.SimpleBindRequest{Username: "cn=sysadmin,ou=accounts," + base, Password: tn.tokens["sysadmin"], Controls: unknown}
		if _, err := l.SimpleBind(bind); !ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension) {
			t.Errorf("bind with a critical unknown control: %v, want unavailableCriticalExtension", err)
		}
		if err := l.Bind("cn=sysadmin,ou=accounts,"+base, tn.tokens["sysadmin"]); err != nil {
			t.Fatal(err)
		}
		add := ldap.NewAddRequest("ou=tmp,ou=departments,"+base, unknown)
		add.Attribute("objectClass", []string{"top", "organizationalUnit"})
		add.Attribute("ou", []string{"tmp"})
		if err := l.Add(add); !ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension) {
			t.Errorf("add with a critical unknown control: %v, want unavailableCriticalExtension", err)
		}
		if err := l.Del(ldap.NewDelRequest(person, unknown)); !ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension) {
			t.Errorf("delete with a critical unknown control: %v, want unavailableCriticalExtension", err)
		}
		res, err := l.Search(ldap.NewSearchRequest("ou=departments,"+base, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(|(ou=tmp)(uid=zhangsan))", []string{"1.1"}, nil))
		if err != nil || len(res.Entries) != 1 || res.Entries[0].DN != person {
			t.Errorf("after the refused add and delete: %v %v, want only %s", err, res, person)
		}
		add.Controls = []ldap.Control{ldap.NewControlString("1.3.6.1.4.1.99999.1", false, "")}
		if err := l.Add(add); err != nil {
			t.Errorf("add with a non-critical unknown control: %v", err)
		}
	})
}

// TestLDAPModifyValues: ldapmodify's add, replace and delete of values,
// several in one modification, non-ASCII ones, and the delete of a whole
// attribute store the values themselves (gldap hands them over still
// BER-encoded); a malformed value is a protocolError.
func TestLDAPModifyValues(t *testing.T) {
	tn := startNode(t, t.TempDir(), "", "")
	if _, err := tn.dirSvc.Load(context.Background(), "test", &directory.Import{
		Departments: []directory.Department{{Code: "gaj", Name: "市公安局"}},
		People:      []directory.Person{{UID: "zhangsan", Name: "张三", Department: "gaj", Title: "deputy"}},
	}); err != nil {
		t.Fatal(err)
	}
	url := "ldap://" + tn.ldap
	base := "dc=govtrust,dc=local"
	person := "uid=zhangsan,ou=gaj,ou=departments," + base
	admin := []string{"-x", "-H", url, "-D", "cn=sysadmin,ou=accounts," + base, "-w", tn.tokens["sysadmin"]}
	modify := func(ldif string) {
		t.Helper()
		cmd := exec.Command(testenv.LookPath(t, "ldapmodify"), admin...)
		cmd.Stdin = strings.NewReader("dn: " + person + "\nchangetype: modify\n" + ldif)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ldapmodify %q: %v\n%s", ldif, err, out)
		}
	}
	read := func() map[string][]string {
		t.Helper()
		l, err := ldap.DialURL(url)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		res, err := l.Search(ldap.NewSearchRequest(person, ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", []string{"title", "description"}, nil))
		if err != nil || len(res.Entries) != 1 {
			t.Fatalf("read %s: %v", person, err)
		}
		got := map[string][]string{}
		for _, a := range res.Entries[0].Attributes {
			got[a.Name] = a.Values
		}
		return got
	}
	steps := []struct {
		ldif string
		want map[string][]string
	}{
		{"replace: title\ntitle: chief\ntitle: 处长\n", map[string][]string{"title": {"chief", "处长"}}},
		{"add: description\ndescription: one\ndescription: two\n", map[string][]string{"title": {"chief", "处长"}, "description": {"one", "two"}}},
		{"delete: title\ntitle: chief\n", map[string][]string{"title": {"处长"}, "description": {"one", "two"}}},
		{"delete: description\n", map[string][]string{"title": {"处长"}}},
	}
	for _, st := range steps {
		modify(st.ldif)
		if got := read(); fmt.Sprint(got) != fmt.Sprint(st.want) {
			t.Errorf("after %q: %q, want %q", st.ldif, got, st.want)
		}
	}

	// A value that is not an OCTET STRING, by hand (go-ldap cannot send
	// one): the request cannot be decoded, whoever sends it.
	pkt := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	pkt.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(99), "MessageID"))
	req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationModifyRequest, nil, "Modify Request")
	req.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, person, "DN"))
	changes := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Changes")
	change := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Change")
	change.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 2, "Operation"))
	attr := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Modification")
	attr.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "title", "Type"))
	set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "Values")
	set.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 7, "not a string"))
	attr.AppendChild(set)
	change.AppendChild(attr)
	changes.AppendChild(change)
	req.AppendChild(changes)
	pkt.AppendChild(req)
	c, err := net.Dial("tcp", tn.ldap)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(pkt.Bytes()); err != nil {
		t.Fatal(err)
	}
	resp, err := ber.ReadPacket(c)
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.Children[1].Children[0].Value.(int64); code != ldap.LDAPResultProtocolError {
		t.Errorf("modify with an INTEGER value: result %d, want protocolError (2)", code)
	}
	if got := read(); fmt.Sprint(got["title"]) != "[处长]" {
		t.Errorf("after the malformed modify: %q", got)
	}
}

// TestLDAPIdleClientDoesNotHoldShutdown: the node stops at once although a
// client holds an idle LDAP connection (gldap's Stop waits for every
// connection; the service closes them).
func TestLDAPIdleClientDoesNotHoldShutdown(t *testing.T) {
	tn := startNode(t, t.TempDir(), "", "")
	l, err := ldap.DialURL("ldap://" + tn.ldap)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Search(ldap.NewSearchRequest("ou=ca,dc=govtrust,dc=local", ldap.ScopeSingleLevel, 0, 0, 0, false, "(cn=sm2-root)", []string{"cn"}, nil)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tn.n.Shutdown(context.Background()) }()
	select {
	case err := <-done:
		tn.n = nil
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the node's shutdown still waits for an idle LDAP client after 10 s (directory.idle_timeout is 5 min)")
	}
}
