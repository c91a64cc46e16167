package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
)

// slotID is the one slot of the module; one token directory is one slot.
const slotID = 0

// notLoggedIn is the login state when nobody is logged in.
const notLoggedIn = -1

// module is the state behind the C interface. One mutex serialises every
// call: PKCS#11 allows concurrent calls from several threads once
// C_Initialize was given CKF_OS_LOCKING_OK (Base §5.4), and a software token
// has no reason to be cleverer. Login holds the mutex during argon2id.
type module struct {
	mu          sync.Mutex
	initialized bool

	st       *store
	tok      *tokenFile // nil while the token is not initialised
	tokStamp fileStamp

	sessions    map[uint]*session
	nextSession uint

	login int    // notLoggedIn, ckuSO or ckuUser; shared by all sessions (Base §2.6)
	key   []byte // token key while someone is logged in

	objects    map[uint]*object
	byFile     map[string]uint
	nextHandle uint
	warned     map[string]bool
}

// mod is the module instance the exported C functions use.
var mod = &module{}

type session struct {
	handle  uint
	rw      bool
	find    []uint // remaining results of C_FindObjects; nil when no search
	finding bool
	sign    *signOp
	decrypt *decryptOp
	digest  *digestOp
}

// C_Initialize flag and return value of Base §5.4 (CK_C_INITIALIZE_ARGS).
const (
	ckfLibraryCantCreateOSThreads = 0x1
	ckrNeedToCreateThreads        = 0x009
)

// initArgs is what C_Initialize was given (Base §5.4, CK_C_INITIALIZE_ARGS).
type initArgs struct {
	present  bool
	mutexFns int // how many of the four mutex callbacks are set
	flags    uint
	reserved bool
}

// warnf writes one diagnostic line to stderr. It is used only for problems
// an operator must fix (configuration, unreadable files) and never carries
// PINs or key material.
func warnf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "govtrust-p11: "+format+"\n", args...)
}

func (m *module) initialize(a initArgs, getenv func(string) string) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.initialized {
		return ckrCryptokiAlreadyInitialized
	}
	if a.present {
		if a.reserved {
			return ckrArgumentsBad
		}
		// All four callbacks or none (Base §5.4). Whether or not the
		// application offers its own mutexes, this module locks with Go's
		// sync.Mutex, which is safe for any pthreads caller on Linux.
		if a.mutexFns != 0 && a.mutexFns != 4 {
			return ckrArgumentsBad
		}
		// The Go runtime inside this library starts OS threads of its own
		// whatever the caller wishes, so a caller that forbids them gets
		// CKR_NEED_TO_CREATE_THREADS (Base §5.4).
		if a.flags&ckfLibraryCantCreateOSThreads != 0 {
			return ckrNeedToCreateThreads
		}
	}
	dir, err := loadDir(getenv)
	if err != nil {
		warnf("C_Initialize: %v", err)
		return ckrGeneralError
	}
	m.st = &store{dir: dir}
	m.tok, m.tokStamp = nil, fileStamp{}
	m.sessions = map[uint]*session{}
	m.nextSession = 0
	m.login = notLoggedIn
	m.key = nil
	m.objects = map[uint]*object{}
	m.byFile = map[string]uint{}
	m.nextHandle = 0
	m.warned = map[string]bool{}
	if r := m.refresh(); r != ckrOK {
		return ckrGeneralError
	}
	m.initialized = true
	return ckrOK
}

func (m *module) finalize() uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.initialized {
		return ckrCryptokiNotInitialized
	}
	m.logoutLocked()
	m.sessions, m.objects, m.byFile = nil, nil, nil
	m.initialized = false
	return ckrOK
}

// ready is the check every function except C_Initialize, C_GetFunctionList
// starts with. The caller holds m.mu.
func (m *module) ready() uint {
	if !m.initialized {
		return ckrCryptokiNotInitialized
	}
	return ckrOK
}

func (m *module) slot(id uint) uint {
	if r := m.ready(); r != ckrOK {
		return r
	}
	if id != slotID {
		return ckrSlotIDInvalid
	}
	return ckrOK
}

// sessionOf returns the session for handle h. The caller holds m.mu.
func (m *module) sessionOf(h uint) (*session, uint) {
	if r := m.ready(); r != ckrOK {
		return nil, r
	}
	s, ok := m.sessions[h]
	if !ok {
		return nil, ckrSessionHandleInvalid
	}
	return s, ckrOK
}

// refresh brings the in-memory view up to date with the directory, which
// other processes may change (another application, pkcs11-tool). Object
// handles stay stable for files that remain. The caller holds m.mu.
func (m *module) refresh() uint {
	stamp, err := m.st.statToken()
	if err != nil {
		warnf("%v", err)
		return ckrDeviceError
	}
	if stamp != m.tokStamp || (m.tok == nil && stamp != (fileStamp{})) {
		tf, st, err := m.st.readToken()
		if err != nil {
			warnf("%v", err)
			return ckrDeviceError
		}
		m.adoptToken(tf, st)
	}
	if m.tok == nil {
		return ckrOK
	}
	ents, err := m.st.listObjects()
	if err != nil {
		warnf("%v", err)
		return ckrDeviceError
	}
	seen := make(map[string]bool, len(ents))
	for _, e := range ents {
		seen[e.id] = true
		h, known := m.byFile[e.id]
		if known && m.objects[h].stamp == e.stamp {
			continue
		}
		o, err := m.st.readObject(e.id)
		if err != nil {
			// One damaged file must not make the whole token unusable.
			if !m.warned[e.id] {
				warnf("skipping object: %v", err)
				m.warned[e.id] = true
			}
			continue
		}
		o.stamp = e.stamp
		if known {
			o.handle = h
		} else {
			o.handle = m.newHandle()
			m.byFile[e.id] = o.handle
		}
		m.objects[o.handle] = o
	}
	for id, h := range m.byFile {
		if !seen[id] {
			delete(m.byFile, id)
			delete(m.objects, h)
		}
	}
	return ckrOK
}

// adoptToken installs a token file read from disk. A different serial
// means the token was re-initialised by someone else: its objects and any
// login belong to the old token and are dropped.
func (m *module) adoptToken(tf *tokenFile, stamp fileStamp) {
	if m.tok != nil && (tf == nil || tf.Serial != m.tok.Serial) {
		m.logoutLocked()
		for id, h := range m.byFile {
			delete(m.objects, h)
			delete(m.byFile, id)
		}
	}
	m.tok, m.tokStamp = tf, stamp
}

func (m *module) newHandle() uint {
	m.nextHandle++
	return m.nextHandle
}

// updateToken runs f on a fresh copy of token.json under the directory lock
// and writes it back when f reports a change. PIN checks go through here so
// failure counters are shared by every process using the token.
func (m *module) updateToken(f func(tf *tokenFile) (changed bool, r uint)) uint {
	unlock, err := m.st.lock()
	if err != nil {
		warnf("%v", err)
		return ckrDeviceError
	}
	defer unlock()
	tf, stamp, err := m.st.readToken()
	if err != nil {
		warnf("%v", err)
		return ckrDeviceError
	}
	if tf == nil {
		m.adoptToken(nil, fileStamp{})
		return ckrTokenNotRecognized
	}
	changed, r := f(tf)
	if changed {
		if stamp, err = m.st.writeToken(tf); err != nil {
			warnf("%v", err)
			return ckrDeviceError
		}
	}
	m.adoptToken(tf, stamp)
	return r
}

// verifyPIN checks pin against role's record, counting failures. On
// success it returns the token key.
func verifyPIN(tf *tokenFile, role string, pin []byte) (key []byte, changed bool, r uint) {
	rec := tf.record(role)
	if rec == nil {
		return nil, false, ckrUserPINNotInitialized
	}
	if rec.Failures >= maxPINFailures {
		return nil, false, ckrPINLocked
	}
	key, err := unwrapTokenKey(tf, role, rec, pin)
	if err != nil {
		rec.Failures++
		return nil, true, ckrPINIncorrect
	}
	if rec.Failures != 0 {
		rec.Failures = 0
		changed = true
	}
	return key, changed, ckrOK
}

func pinLenOK(pin []byte) bool { return len(pin) >= minPINLen && len(pin) <= maxPINLen }

// Slot and token management (Base §5.5).

func (m *module) slotList() ([]uint, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.ready(); r != ckrOK {
		return nil, r
	}
	return []uint{slotID}, ckrOK
}

func (m *module) slotInfo(id uint) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.slot(id)
}

// tokenInfo is CK_TOKEN_INFO in Go terms.
type tokenInfo struct {
	label, serial        string
	flags                uint
	sessions, rwSessions uint
	minPIN, maxPIN       uint
}

func (m *module) tokenInfo(id uint) (tokenInfo, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.slot(id); r != ckrOK {
		return tokenInfo{}, r
	}
	if r := m.refresh(); r != ckrOK {
		return tokenInfo{}, r
	}
	ti := tokenInfo{flags: ckfRNG | ckfLoginRequired, minPIN: minPINLen, maxPIN: maxPINLen}
	for _, s := range m.sessions {
		ti.sessions++
		if s.rw {
			ti.rwSessions++
		}
	}
	if m.tok == nil {
		return ti, ckrOK
	}
	ti.label, ti.serial = m.tok.Label, m.tok.Serial
	ti.flags |= ckfTokenInitialized
	ti.flags |= pinFlags(&m.tok.SO, ckfSOPINCountLow, ckfSOPINFinalTry, ckfSOPINLocked)
	if m.tok.User != nil {
		ti.flags |= ckfUserPINInitialized
		ti.flags |= pinFlags(m.tok.User, ckfUserPINCountLow, ckfUserPINFinalTry, ckfUserPINLocked)
	}
	return ti, ckrOK
}

func pinFlags(rec *pinRecord, low, final, locked uint) uint {
	switch {
	case rec.Failures >= maxPINFailures:
		return locked
	case rec.Failures == maxPINFailures-1:
		return low | final
	case rec.Failures > 0:
		return low
	}
	return 0
}

func (m *module) initToken(id uint, soPIN []byte, label string) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.slot(id); r != ckrOK {
		return r
	}
	if len(m.sessions) > 0 {
		return ckrSessionExists
	}
	unlock, err := m.st.lock()
	if err != nil {
		warnf("%v", err)
		return ckrDeviceError
	}
	defer unlock()
	tf, _, err := m.st.readToken()
	if err != nil {
		warnf("%v", err)
		return ckrDeviceError
	}
	if tf != nil {
		// Re-initialisation needs the current SO PIN (Base §5.5).
		_, changed, r := verifyPIN(tf, roleSO, soPIN)
		if changed {
			if _, err := m.st.writeToken(tf); err != nil {
				warnf("%v", err)
				return ckrDeviceError
			}
		}
		if r != ckrOK {
			return r
		}
	} else if !pinLenOK(soPIN) {
		return ckrPINLenRange
	}
	ntf, stamp, err := m.st.wipe(soPIN, label)
	if err != nil {
		warnf("initialise token: %v", err)
		return ckrDeviceError
	}
	m.logoutLocked()
	for id, h := range m.byFile {
		delete(m.objects, h)
		delete(m.byFile, id)
	}
	m.tok, m.tokStamp = ntf, stamp
	return ckrOK
}

func (m *module) initPIN(sh uint, pin []byte) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return r
	}
	if m.state(s) != cksRWSOFunctions {
		return ckrUserNotLoggedIn
	}
	if !pinLenOK(pin) {
		return ckrPINLenRange
	}
	key := m.key
	return m.updateToken(func(tf *tokenFile) (bool, uint) {
		rec, err := wrapTokenKey(tf, roleUser, pin, key)
		if err != nil {
			warnf("%v", err)
			return false, ckrGeneralError
		}
		tf.User = rec
		return true, ckrOK
	})
}

func (m *module) setPIN(sh uint, oldPIN, newPIN []byte) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return r
	}
	if !s.rw {
		return ckrSessionReadOnly
	}
	role := roleUser
	if m.login == ckuSO {
		role = roleSO
	}
	if !pinLenOK(newPIN) {
		return ckrPINLenRange
	}
	return m.updateToken(func(tf *tokenFile) (bool, uint) {
		key, changed, r := verifyPIN(tf, role, oldPIN)
		if r != ckrOK {
			return changed, r
		}
		defer clear(key)
		rec, err := wrapTokenKey(tf, role, newPIN, key)
		if err != nil {
			warnf("%v", err)
			return changed, ckrGeneralError
		}
		if role == roleSO {
			tf.SO = *rec
		} else {
			tf.User = rec
		}
		return true, ckrOK
	})
}

// Session management (Base §5.6).

func (m *module) openSession(id, flags uint) (uint, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.slot(id); r != ckrOK {
		return 0, r
	}
	if flags&ckfSerialSession == 0 {
		return 0, ckrSessionParallelNotSupported
	}
	if r := m.refresh(); r != ckrOK {
		return 0, r
	}
	if m.tok == nil {
		return 0, ckrTokenNotRecognized
	}
	rw := flags&ckfRWSession != 0
	if !rw && m.login == ckuSO {
		return 0, ckrSessionReadWriteSOExists
	}
	m.nextSession++
	s := &session{handle: m.nextSession, rw: rw}
	m.sessions[s.handle] = s
	return s.handle, ckrOK
}

func (m *module) closeSession(sh uint) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, r := m.sessionOf(sh); r != ckrOK {
		return r
	}
	m.closeSessionLocked(sh)
	return ckrOK
}

func (m *module) closeAllSessions(id uint) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.slot(id); r != ckrOK {
		return r
	}
	for h := range m.sessions {
		m.closeSessionLocked(h)
	}
	return ckrOK
}

// closeSessionLocked destroys the session's session objects and, when it was
// the last session, logs out (Base §5.6, C_CloseSession).
func (m *module) closeSessionLocked(sh uint) {
	delete(m.sessions, sh)
	for h, o := range m.objects {
		if o.fileID == "" && o.session == sh {
			delete(m.objects, h)
		}
	}
	if len(m.sessions) == 0 {
		m.logoutLocked()
	}
}

func (m *module) state(s *session) uint {
	switch {
	case m.login == ckuSO:
		return cksRWSOFunctions
	case m.login == ckuUser && s.rw:
		return cksRWUserFunctions
	case m.login == ckuUser:
		return cksROUserFunctions
	case s.rw:
		return cksRWPublicSession
	}
	return cksROPublicSession
}

func (m *module) sessionInfo(sh uint) (state, flags uint, r uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return 0, 0, r
	}
	flags = ckfSerialSession
	if s.rw {
		flags |= ckfRWSession
	}
	return m.state(s), flags, ckrOK
}

func (m *module) loginUser(sh, userType uint, pin []byte) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, r := m.sessionOf(sh); r != ckrOK {
		return r
	}
	switch userType {
	case ckuContextSpecific:
		// No key here has CKA_ALWAYS_AUTHENTICATE, so no operation ever
		// waits for a context-specific login.
		if m.login != ckuUser {
			return ckrUserNotLoggedIn
		}
		return ckrOperationNotInitialized
	case ckuSO, ckuUser:
	default:
		return ckrUserTypeInvalid
	}
	if m.login == int(userType) {
		return ckrUserAlreadyLoggedIn
	}
	if m.login != notLoggedIn {
		return ckrUserAnotherAlreadyLoggedIn
	}
	role := roleUser
	if userType == ckuSO {
		role = roleSO
		for _, s := range m.sessions {
			if !s.rw {
				return ckrSessionReadOnlyExists
			}
		}
	}
	if r := m.refresh(); r != ckrOK {
		return r
	}
	var key []byte
	r := m.updateToken(func(tf *tokenFile) (bool, uint) {
		k, changed, r := verifyPIN(tf, role, pin)
		key = k
		return changed, r
	})
	if r != ckrOK {
		return r
	}
	m.login = int(userType)
	m.key = key
	return ckrOK
}

func (m *module) logout(sh uint) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, r := m.sessionOf(sh); r != ckrOK {
		return r
	}
	if m.login == notLoggedIn {
		return ckrUserNotLoggedIn
	}
	m.logoutLocked()
	return ckrOK
}

// logoutLocked forgets the token key, ends every operation that used a key
// or could have found private objects, and destroys private session objects
// (Base §5.6, C_Logout).
func (m *module) logoutLocked() {
	clear(m.key)
	m.key = nil
	m.login = notLoggedIn
	for _, s := range m.sessions {
		s.find, s.finding = nil, false
		s.sign, s.decrypt = nil, nil
	}
	for h, o := range m.objects {
		if o.fileID == "" && o.private() {
			delete(m.objects, h)
		}
	}
}

// Object management (Base §5.7).

// objectOf returns the object for handle h if the current login may use it.
func (m *module) objectOf(h uint) (*object, uint) {
	o, ok := m.objects[h]
	if !ok {
		return nil, ckrObjectHandleInvalid
	}
	if o.private() && m.login != ckuUser {
		return nil, ckrUserNotLoggedIn
	}
	return o, ckrOK
}

// canWrite checks that s may create or change an object with these token
// and private flags.
func (m *module) canWrite(s *session, token, private bool) uint {
	if token && !s.rw {
		return ckrSessionReadOnly
	}
	if private && m.login != ckuUser {
		return ckrUserNotLoggedIn
	}
	return ckrOK
}

// value returns attribute t of o, opening it if it is sealed.
func (m *module) value(o *object, t uint) ([]byte, error) {
	if v, ok := o.attrs[t]; ok {
		return v, nil
	}
	box, ok := o.sealed[t]
	if !ok {
		return nil, fmt.Errorf("no attribute %#x", t)
	}
	if m.key == nil {
		return nil, fmt.Errorf("token key not available")
	}
	return open(m.key, box, attrAAD(m.tok.Serial, o.fileID, t))
}

// addObject stores a new object: token objects get a file (private values
// sealed under the token key), session objects belong to s.
func (m *module) addObject(s *session, o *object) uint {
	if o.token() {
		o.fileID = newObjectID()
		o.session = 0
		if o.private() {
			if v, ok := o.attrs[ckaValue]; ok {
				box, err := seal(m.key, v, attrAAD(m.tok.Serial, o.fileID, ckaValue))
				if err != nil {
					warnf("seal object value: %v", err)
					return ckrGeneralError
				}
				o.sealed = map[uint][]byte{ckaValue: box}
				delete(o.attrs, ckaValue)
			}
		}
		if err := m.st.writeObject(o); err != nil {
			warnf("store object: %v", err)
			return ckrDeviceError
		}
	} else {
		o.session = s.handle
	}
	o.handle = m.newHandle()
	m.objects[o.handle] = o
	if o.fileID != "" {
		m.byFile[o.fileID] = o.handle
	}
	return ckrOK
}

func (m *module) createObject(sh uint, tmpl []attribute) (uint, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return 0, r
	}
	a, r := parseTemplate(tmpl)
	if r != ckrOK {
		return 0, r
	}
	class, ok := a.ulong(ckaClass)
	if !ok {
		return 0, ckrTemplateIncomplete
	}
	var o *object
	switch class {
	case ckoData:
		o, r = newDataObject(a)
	case ckoCertificate:
		o, r = newCertificateObject(a)
		if r == ckrOK && o.attrs.boolean(ckaTrusted, false) && m.login != ckuSO {
			// Only the SO may mark a certificate trusted (Base §4.6.2).
			r = ckrAttributeReadOnly
		}
	default:
		// Keys are created inside the token only (C_GenerateKeyPair);
		// importing keys would make them neither local nor always sensitive.
		r = ckrAttributeValueInvalid
	}
	if r != ckrOK {
		return 0, r
	}
	if r := m.canWrite(s, o.token(), o.private()); r != ckrOK {
		return 0, r
	}
	if r := m.addObject(s, o); r != ckrOK {
		return 0, r
	}
	return o.handle, ckrOK
}

func withDefaults(a attrMap, defaults attrMap) *object {
	o := &object{attrs: defaults}
	for t, v := range a {
		o.attrs[t] = v
	}
	return o
}

func storageDefaults(class uint, private bool) attrMap {
	return attrMap{
		ckaClass:       encUlong(class),
		ckaToken:       encBool(false),
		ckaPrivate:     encBool(private),
		ckaModifiable:  encBool(true),
		ckaLabel:       {},
		ckaCopyable:    encBool(false), // C_CopyObject is not supported
		ckaDestroyable: encBool(true),
	}
}

// newDataObject builds a CKO_DATA object (Base §4.5). Data objects default
// to private: govtrust keeps key metadata in them.
func newDataObject(a attrMap) (*object, uint) {
	if !a.only(dataAttrs...) {
		return nil, ckrAttributeTypeInvalid
	}
	d := storageDefaults(ckoData, true)
	d[ckaApplication], d[ckaObjectID], d[ckaValue] = []byte{}, []byte{}, []byte{}
	return withDefaults(a, d), ckrOK
}

// newCertificateObject builds an X.509 public key certificate object (Base
// §4.6.3). Subject, issuer and serial number are taken from the certificate
// when the template leaves them out.
func newCertificateObject(a attrMap) (*object, uint) {
	if !a.only(certAttrs...) {
		return nil, ckrAttributeTypeInvalid
	}
	ct, ok := a.ulong(ckaCertificateType)
	if !ok {
		return nil, ckrTemplateIncomplete
	}
	if ct != ckcX509 {
		return nil, ckrAttributeValueInvalid
	}
	der, ok := a[ckaValue]
	if !ok || len(der) == 0 {
		return nil, ckrTemplateIncomplete
	}
	d := storageDefaults(ckoCertificate, false)
	d[ckaCertificateType] = encUlong(ckcX509)
	d[ckaTrusted] = encBool(false)
	d[ckaCertificateCategory] = encUlong(0)
	d[ckaStartDate], d[ckaEndDate], d[ckaID] = []byte{}, []byte{}, []byte{}
	d[ckaSubject], d[ckaIssuer], d[ckaSerialNumber] = certNames(der)
	return withDefaults(a, d), ckrOK
}

func (m *module) destroyObject(sh, h uint) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return r
	}
	o, r := m.objectOf(h)
	if r != ckrOK {
		return r
	}
	if r := m.canWrite(s, o.token(), o.private()); r != ckrOK {
		return r
	}
	if !o.attrs.boolean(ckaDestroyable, true) {
		return ckrActionProhibited
	}
	if o.fileID != "" {
		if err := m.st.removeObject(o.fileID); err != nil {
			warnf("%v", err)
			return ckrDeviceError
		}
		delete(m.byFile, o.fileID)
	}
	delete(m.objects, h)
	return ckrOK
}

// attrResult is the outcome for one attribute of C_GetAttributeValue:
// r is ckrOK, ckrAttributeSensitive or ckrAttributeTypeInvalid.
type attrResult struct {
	val []byte
	r   uint
}

func (m *module) getAttributes(sh, h uint, types []uint) ([]attrResult, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, r := m.sessionOf(sh); r != ckrOK {
		return nil, r
	}
	o, r := m.objectOf(h)
	if r != ckrOK {
		return nil, r
	}
	out := make([]attrResult, len(types))
	for i, t := range types {
		switch {
		case !o.has(t):
			out[i].r = ckrAttributeTypeInvalid
		case o.sensitive(t):
			out[i].r = ckrAttributeSensitive
		default:
			v, err := m.value(o, t)
			if err != nil {
				warnf("read attribute: %v", err)
				return nil, ckrGeneralError
			}
			out[i].val = v
		}
	}
	return out, ckrOK
}

// settable lists the attributes C_SetAttributeValue may change. Key usage
// flags are fixed at generation: hsm key separation relies on them.
func settable(o *object, t uint) bool {
	switch t {
	case ckaLabel, ckaID, ckaSubject, ckaStartDate, ckaEndDate:
		return true
	case ckaApplication, ckaObjectID, ckaValue:
		return o.class() == ckoData
	}
	return false
}

func (m *module) setAttributes(sh, h uint, tmpl []attribute) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return r
	}
	o, r := m.objectOf(h)
	if r != ckrOK {
		return r
	}
	if r := m.canWrite(s, o.token(), o.private()); r != ckrOK {
		return r
	}
	a, r := parseTemplate(tmpl)
	if r != ckrOK {
		return r
	}
	if !o.attrs.boolean(ckaModifiable, true) {
		return ckrActionProhibited
	}
	next := &object{handle: o.handle, fileID: o.fileID, session: o.session, attrs: attrMap{}, sealed: map[uint][]byte{}}
	for t, v := range o.attrs {
		next.attrs[t] = v
	}
	for t, v := range o.sealed {
		next.sealed[t] = v
	}
	for t, v := range a {
		if !o.has(t) {
			return ckrAttributeTypeInvalid
		}
		if !settable(o, t) {
			// Setting a read-only attribute to the value it already has is
			// accepted; Java and some tools re-send whole templates.
			if cur, ok := o.attrs[t]; ok && string(cur) == string(v) {
				continue
			}
			return ckrAttributeReadOnly
		}
		if _, sealed := o.sealed[t]; sealed {
			box, err := seal(m.key, v, attrAAD(m.tok.Serial, o.fileID, t))
			if err != nil {
				warnf("seal attribute: %v", err)
				return ckrGeneralError
			}
			next.sealed[t] = box
			continue
		}
		next.attrs[t] = v
	}
	if next.fileID != "" {
		if err := m.st.writeObject(next); err != nil {
			warnf("store object: %v", err)
			return ckrDeviceError
		}
	}
	m.objects[h] = next
	return ckrOK
}

func (m *module) findInit(sh uint, tmpl []attribute) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return r
	}
	if s.finding {
		return ckrOperationActive
	}
	// A type this token does not know matches no object rather than
	// failing the search: "find me X with attribute Y" has the answer
	// "none" (Base §5.7, C_FindObjectsInit).
	unknown := false
	var known []attribute
	for _, a := range tmpl {
		if _, ok := attrDefs[a.typ]; !ok {
			unknown = true
			continue
		}
		known = append(known, a)
	}
	want, r := parseTemplate(known)
	if r != ckrOK {
		return r
	}
	if r := m.refresh(); r != ckrOK {
		return r
	}
	s.finding, s.find = true, []uint{}
	if unknown {
		return ckrOK
	}
	for h, o := range m.objects {
		if o.private() && m.login != ckuUser {
			continue
		}
		if o.matches(want, m.value) {
			s.find = append(s.find, h)
		}
	}
	sort.Slice(s.find, func(i, j int) bool { return s.find[i] < s.find[j] })
	return ckrOK
}

func (m *module) findObjects(sh uint, limit int) ([]uint, uint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return nil, r
	}
	if !s.finding {
		return nil, ckrOperationNotInitialized
	}
	n := min(limit, len(s.find))
	out := s.find[:n:n]
	s.find = s.find[n:]
	return out, ckrOK
}

func (m *module) findFinal(sh uint) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, r := m.sessionOf(sh)
	if r != ckrOK {
		return r
	}
	if !s.finding {
		return ckrOperationNotInitialized
	}
	s.finding, s.find = false, nil
	return ckrOK
}

// Random numbers (Base §5.15).

func (m *module) generateRandom(sh uint, buf []byte) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, r := m.sessionOf(sh); r != ckrOK {
		return r
	}
	_, _ = rand.Read(buf) // never fails on Linux (Go ≥ 1.24)
	return ckrOK
}

// seedRandom: the token's generator is the operating system's, which takes
// no seed from applications, so the answer is CKR_RANDOM_SEED_NOT_SUPPORTED
// (Base §5.15) once the session is known to be valid.
func (m *module) seedRandom(sh uint) uint {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, r := m.sessionOf(sh); r != ckrOK {
		return r
	}
	return ckrRandomSeedNotSupported
}

// padded returns s cut or blank-padded to n bytes, the form of the fixed
// character fields of CK_INFO, CK_SLOT_INFO and CK_TOKEN_INFO (Base §3.2).
func padded(s string, n int) []byte {
	if len(s) > n {
		s = s[:n]
	}
	return []byte(s + strings.Repeat(" ", n-len(s)))
}
