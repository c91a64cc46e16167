package main

/*
#include <stdlib.h>
#include "cryptoki.h"
*/
import "C"

import (
	"bytes"
	"unsafe"
)

// The functions below are the Go halves of the Cryptoki entry points. The C
// halves in cryptoki.c put them into the CK_FUNCTION_LIST. Each one copies
// its C arguments into Go values, calls the module, and writes results back
// into caller memory. None lets a panic cross into C: a panic unwinding
// through a C frame kills the host process, so guard turns it into
// CKR_GENERAL_ERROR.

// CK_ULONG must have the size object.go assumes; these fail to compile
// otherwise.
var (
	_ [ulongSize - unsafe.Sizeof(C.CK_ULONG(0))]struct{}
	_ [unsafe.Sizeof(C.CK_ULONG(0)) - ulongSize]struct{}
)

func guard(fn string, rv *C.CK_RV) {
	if p := recover(); p != nil {
		warnf("%s: internal error: %v", fn, p)
		*rv = ckrGeneralError
	}
}

// maxInput bounds one buffer passed in by the caller.
const maxInput = 1 << 30

// cBytes copies n bytes at p. A NULL pointer is fine for an empty buffer.
func cBytes(p unsafe.Pointer, n C.CK_ULONG) ([]byte, bool) {
	if n == 0 {
		return []byte{}, true
	}
	if p == nil || n > maxInput {
		return nil, false
	}
	return C.GoBytes(p, C.int(n)), true
}

func cTemplate(p *C.CK_ATTRIBUTE, n C.CK_ULONG) ([]attribute, bool) {
	if n == 0 {
		return nil, true
	}
	if p == nil || n > 1<<16 {
		return nil, false
	}
	out := make([]attribute, n)
	for i, a := range unsafe.Slice(p, int(n)) {
		v, ok := cBytes(unsafe.Pointer(a.pValue), a.ulValueLen)
		if !ok {
			return nil, false
		}
		out[i] = attribute{typ: uint(a._type), val: v}
	}
	return out, true
}

func cMechanism(p *C.CK_MECHANISM) (mechanism, bool) {
	if p == nil {
		return mechanism{}, false
	}
	param, ok := cBytes(unsafe.Pointer(p.pParameter), p.ulParameterLen)
	if !ok {
		return mechanism{}, false
	}
	return mechanism{typ: uint(p.mechanism), param: param}, true
}

// produce implements the output convention of Base §5.2: with a NULL
// buffer only the length is returned; with a short buffer the length and
// CKR_BUFFER_TOO_SMALL are returned and the operation stays active;
// otherwise the operation runs and its output is copied.
func produce(p *C.CK_BYTE, pLen *C.CK_ULONG, length func() (int, uint), run func() ([]byte, uint)) C.CK_RV {
	if pLen == nil {
		return ckrArgumentsBad
	}
	n, r := length()
	if r != ckrOK {
		return C.CK_RV(r)
	}
	if p == nil {
		*pLen = C.CK_ULONG(n)
		return ckrOK
	}
	if uint(*pLen) < uint(n) {
		*pLen = C.CK_ULONG(n)
		return ckrBufferTooSmall
	}
	out, r := run()
	if r != ckrOK {
		return C.CK_RV(r)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(p)), len(out)), out)
	*pLen = C.CK_ULONG(len(out))
	return ckrOK
}

// listOut writes a list of CK_ULONG values with the same convention.
func listOut(vals []uint, p *C.CK_ULONG, pCount *C.CK_ULONG) C.CK_RV {
	if pCount == nil {
		return ckrArgumentsBad
	}
	if p == nil {
		*pCount = C.CK_ULONG(len(vals))
		return ckrOK
	}
	if uint(*pCount) < uint(len(vals)) {
		*pCount = C.CK_ULONG(len(vals))
		return ckrBufferTooSmall
	}
	dst := unsafe.Slice(p, len(vals))
	for i, v := range vals {
		dst[i] = C.CK_ULONG(v)
	}
	*pCount = C.CK_ULONG(len(vals))
	return ckrOK
}

func setPadded[T ~uint8](dst []T, s string) {
	for i, b := range padded(s, len(dst)) {
		dst[i] = T(b)
	}
}

// Identification strings.
const (
	manufacturer   = "govtrust"
	libraryDesc    = "govtrust SM2 software token"
	slotDesc       = "govtrust-p11 software slot (no hardware)"
	tokenModel     = "SW token"
	libraryVersion = 1
)

//export govtrustP11Initialize
func govtrustP11Initialize(pInitArgs unsafe.Pointer) (rv C.CK_RV) {
	defer guard("C_Initialize", &rv)
	var a initArgs
	if pInitArgs != nil {
		args := (*C.CK_C_INITIALIZE_ARGS)(pInitArgs)
		a.present = true
		a.flags = uint(args.flags)
		a.reserved = args.pReserved != nil
		for _, f := range []unsafe.Pointer{unsafe.Pointer(args.CreateMutex), unsafe.Pointer(args.DestroyMutex),
			unsafe.Pointer(args.LockMutex), unsafe.Pointer(args.UnlockMutex)} {
			if f != nil {
				a.mutexFns++
			}
		}
	}
	return C.CK_RV(mod.initialize(a, liveGetenv))
}

// liveGetenv reads the process environment as it is now, through getenv(3).
// os.Getenv would not do: the Go runtime of a c-shared library copies the
// environment the process was started with, so a host that sets
// GOVTRUST_P11_DIR with setenv(3) before C_Initialize would not be heard.
func liveGetenv(name string) string {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	v := C.getenv(cs)
	if v == nil {
		return ""
	}
	return C.GoString(v)
}

//export govtrustP11Finalize
func govtrustP11Finalize(pReserved unsafe.Pointer) (rv C.CK_RV) {
	defer guard("C_Finalize", &rv)
	if pReserved != nil {
		return ckrArgumentsBad
	}
	return C.CK_RV(mod.finalize())
}

//export govtrustP11GetInfo
func govtrustP11GetInfo(pInfo *C.CK_INFO) (rv C.CK_RV) {
	defer guard("C_GetInfo", &rv)
	mod.mu.Lock()
	r := mod.ready()
	mod.mu.Unlock()
	if r != ckrOK {
		return C.CK_RV(r)
	}
	if pInfo == nil {
		return ckrArgumentsBad
	}
	pInfo.cryptokiVersion = C.CK_VERSION{major: 2, minor: 40}
	setPadded(pInfo.manufacturerID[:], manufacturer)
	pInfo.flags = 0
	setPadded(pInfo.libraryDescription[:], libraryDesc)
	pInfo.libraryVersion = C.CK_VERSION{major: libraryVersion, minor: 0}
	return ckrOK
}

//export govtrustP11GetSlotList
func govtrustP11GetSlotList(tokenPresent C.CK_BBOOL, pSlotList *C.CK_SLOT_ID, pulCount *C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_GetSlotList", &rv)
	slots, r := mod.slotList()
	if r != ckrOK {
		return C.CK_RV(r)
	}
	return listOut(slots, pSlotList, pulCount)
}

//export govtrustP11GetSlotInfo
func govtrustP11GetSlotInfo(slot C.CK_SLOT_ID, pInfo *C.CK_SLOT_INFO) (rv C.CK_RV) {
	defer guard("C_GetSlotInfo", &rv)
	if r := mod.slotInfo(uint(slot)); r != ckrOK {
		return C.CK_RV(r)
	}
	if pInfo == nil {
		return ckrArgumentsBad
	}
	setPadded(pInfo.slotDescription[:], slotDesc)
	setPadded(pInfo.manufacturerID[:], manufacturer)
	pInfo.flags = ckfTokenPresent
	pInfo.hardwareVersion = C.CK_VERSION{}
	pInfo.firmwareVersion = C.CK_VERSION{}
	return ckrOK
}

//export govtrustP11GetTokenInfo
func govtrustP11GetTokenInfo(slot C.CK_SLOT_ID, pInfo *C.CK_TOKEN_INFO) (rv C.CK_RV) {
	defer guard("C_GetTokenInfo", &rv)
	ti, r := mod.tokenInfo(uint(slot))
	if r != ckrOK {
		return C.CK_RV(r)
	}
	if pInfo == nil {
		return ckrArgumentsBad
	}
	unavailable := C.CK_ULONG(ckUnavailableInformation)
	setPadded(pInfo.label[:], ti.label)
	setPadded(pInfo.manufacturerID[:], manufacturer)
	setPadded(pInfo.model[:], tokenModel)
	setPadded(pInfo.serialNumber[:], ti.serial)
	pInfo.flags = C.CK_FLAGS(ti.flags)
	pInfo.ulMaxSessionCount = 0 // CK_EFFECTIVELY_INFINITE
	pInfo.ulSessionCount = C.CK_ULONG(ti.sessions)
	pInfo.ulMaxRwSessionCount = 0
	pInfo.ulRwSessionCount = C.CK_ULONG(ti.rwSessions)
	pInfo.ulMaxPinLen = C.CK_ULONG(ti.maxPIN)
	pInfo.ulMinPinLen = C.CK_ULONG(ti.minPIN)
	pInfo.ulTotalPublicMemory = unavailable
	pInfo.ulFreePublicMemory = unavailable
	pInfo.ulTotalPrivateMemory = unavailable
	pInfo.ulFreePrivateMemory = unavailable
	pInfo.hardwareVersion = C.CK_VERSION{}
	pInfo.firmwareVersion = C.CK_VERSION{major: libraryVersion}
	setPadded(pInfo.utcTime[:], "") // no CKF_CLOCK_ON_TOKEN
	return ckrOK
}

//export govtrustP11GetMechanismList
func govtrustP11GetMechanismList(slot C.CK_SLOT_ID, pList *C.CK_MECHANISM_TYPE, pulCount *C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_GetMechanismList", &rv)
	if r := mod.slotInfo(uint(slot)); r != ckrOK {
		return C.CK_RV(r)
	}
	types := make([]uint, len(mechanisms))
	for i, mi := range mechanisms {
		types[i] = mi.typ
	}
	return listOut(types, pList, pulCount)
}

//export govtrustP11GetMechanismInfo
func govtrustP11GetMechanismInfo(slot C.CK_SLOT_ID, typ C.CK_MECHANISM_TYPE, pInfo *C.CK_MECHANISM_INFO) (rv C.CK_RV) {
	defer guard("C_GetMechanismInfo", &rv)
	if r := mod.slotInfo(uint(slot)); r != ckrOK {
		return C.CK_RV(r)
	}
	mi, ok := mechanismInfo(uint(typ))
	if !ok {
		return ckrMechanismInvalid
	}
	if pInfo == nil {
		return ckrArgumentsBad
	}
	pInfo.ulMinKeySize = C.CK_ULONG(mi.min)
	pInfo.ulMaxKeySize = C.CK_ULONG(mi.max)
	pInfo.flags = C.CK_FLAGS(mi.flags)
	return ckrOK
}

//export govtrustP11InitToken
func govtrustP11InitToken(slot C.CK_SLOT_ID, pPin *C.CK_UTF8CHAR, ulPinLen C.CK_ULONG, pLabel *C.CK_UTF8CHAR) (rv C.CK_RV) {
	defer guard("C_InitToken", &rv)
	pin, ok := cBytes(unsafe.Pointer(pPin), ulPinLen)
	if !ok || pLabel == nil {
		return ckrArgumentsBad
	}
	defer clear(pin)
	// The label is 32 bytes, blank padded, not NUL terminated (Base §5.5).
	raw := C.GoBytes(unsafe.Pointer(pLabel), 32)
	label := string(bytes.TrimRight(raw, " \x00"))
	return C.CK_RV(mod.initToken(uint(slot), pin, label))
}

//export govtrustP11InitPIN
func govtrustP11InitPIN(hSession C.CK_SESSION_HANDLE, pPin *C.CK_UTF8CHAR, ulPinLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_InitPIN", &rv)
	pin, ok := cBytes(unsafe.Pointer(pPin), ulPinLen)
	if !ok || pPin == nil {
		return ckrArgumentsBad
	}
	defer clear(pin)
	return C.CK_RV(mod.initPIN(uint(hSession), pin))
}

//export govtrustP11SetPIN
func govtrustP11SetPIN(hSession C.CK_SESSION_HANDLE, pOld *C.CK_UTF8CHAR, ulOldLen C.CK_ULONG, pNew *C.CK_UTF8CHAR, ulNewLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_SetPIN", &rv)
	oldPIN, ok1 := cBytes(unsafe.Pointer(pOld), ulOldLen)
	newPIN, ok2 := cBytes(unsafe.Pointer(pNew), ulNewLen)
	if !ok1 || !ok2 || pOld == nil || pNew == nil {
		return ckrArgumentsBad
	}
	defer clear(oldPIN)
	defer clear(newPIN)
	return C.CK_RV(mod.setPIN(uint(hSession), oldPIN, newPIN))
}

//export govtrustP11OpenSession
func govtrustP11OpenSession(slot C.CK_SLOT_ID, flags C.CK_FLAGS, pApplication unsafe.Pointer, notify C.CK_NOTIFY, phSession *C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	defer guard("C_OpenSession", &rv)
	// Notify callbacks are never called: this token has no events to
	// report (Base §5.6 allows ignoring them).
	if phSession == nil {
		return ckrArgumentsBad
	}
	h, r := mod.openSession(uint(slot), uint(flags))
	if r != ckrOK {
		return C.CK_RV(r)
	}
	*phSession = C.CK_SESSION_HANDLE(h)
	return ckrOK
}

//export govtrustP11CloseSession
func govtrustP11CloseSession(hSession C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	defer guard("C_CloseSession", &rv)
	return C.CK_RV(mod.closeSession(uint(hSession)))
}

//export govtrustP11CloseAllSessions
func govtrustP11CloseAllSessions(slot C.CK_SLOT_ID) (rv C.CK_RV) {
	defer guard("C_CloseAllSessions", &rv)
	return C.CK_RV(mod.closeAllSessions(uint(slot)))
}

//export govtrustP11GetSessionInfo
func govtrustP11GetSessionInfo(hSession C.CK_SESSION_HANDLE, pInfo *C.CK_SESSION_INFO) (rv C.CK_RV) {
	defer guard("C_GetSessionInfo", &rv)
	state, flags, r := mod.sessionInfo(uint(hSession))
	if r != ckrOK {
		return C.CK_RV(r)
	}
	if pInfo == nil {
		return ckrArgumentsBad
	}
	pInfo.slotID = slotID
	pInfo.state = C.CK_STATE(state)
	pInfo.flags = C.CK_FLAGS(flags)
	pInfo.ulDeviceError = 0
	return ckrOK
}

//export govtrustP11Login
func govtrustP11Login(hSession C.CK_SESSION_HANDLE, userType C.CK_USER_TYPE, pPin *C.CK_UTF8CHAR, ulPinLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_Login", &rv)
	// No protected authentication path: a NULL PIN is an error.
	pin, ok := cBytes(unsafe.Pointer(pPin), ulPinLen)
	if !ok || pPin == nil {
		return ckrArgumentsBad
	}
	defer clear(pin)
	return C.CK_RV(mod.loginUser(uint(hSession), uint(userType), pin))
}

//export govtrustP11Logout
func govtrustP11Logout(hSession C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	defer guard("C_Logout", &rv)
	return C.CK_RV(mod.logout(uint(hSession)))
}

//export govtrustP11CreateObject
func govtrustP11CreateObject(hSession C.CK_SESSION_HANDLE, pTemplate *C.CK_ATTRIBUTE, ulCount C.CK_ULONG, phObject *C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard("C_CreateObject", &rv)
	tmpl, ok := cTemplate(pTemplate, ulCount)
	if !ok || phObject == nil {
		return ckrArgumentsBad
	}
	h, r := mod.createObject(uint(hSession), tmpl)
	if r != ckrOK {
		return C.CK_RV(r)
	}
	*phObject = C.CK_OBJECT_HANDLE(h)
	return ckrOK
}

//export govtrustP11DestroyObject
func govtrustP11DestroyObject(hSession C.CK_SESSION_HANDLE, hObject C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard("C_DestroyObject", &rv)
	return C.CK_RV(mod.destroyObject(uint(hSession), uint(hObject)))
}

//export govtrustP11GetAttributeValue
func govtrustP11GetAttributeValue(hSession C.CK_SESSION_HANDLE, hObject C.CK_OBJECT_HANDLE, pTemplate *C.CK_ATTRIBUTE, ulCount C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_GetAttributeValue", &rv)
	if ulCount > 0 && pTemplate == nil || ulCount > 1<<16 {
		return ckrArgumentsBad
	}
	attrs := unsafe.Slice(pTemplate, int(ulCount))
	types := make([]uint, len(attrs))
	for i := range attrs {
		types[i] = uint(attrs[i]._type)
	}
	res, r := mod.getAttributes(uint(hSession), uint(hObject), types)
	if r != ckrOK {
		return C.CK_RV(r)
	}
	// Every attribute is processed; the return value reports one of the
	// problems met (Base §5.7, C_GetAttributeValue, cases 1–5).
	rv = ckrOK
	for i := range attrs {
		a := &attrs[i]
		if res[i].r != ckrOK {
			a.ulValueLen = C.CK_ULONG(ckUnavailableInformation)
			rv = C.CK_RV(res[i].r)
			continue
		}
		v := res[i].val
		switch {
		case a.pValue == nil:
			a.ulValueLen = C.CK_ULONG(len(v))
		case uint(a.ulValueLen) < uint(len(v)):
			a.ulValueLen = C.CK_ULONG(ckUnavailableInformation)
			rv = ckrBufferTooSmall
		default:
			copy(unsafe.Slice((*byte)(a.pValue), len(v)), v)
			a.ulValueLen = C.CK_ULONG(len(v))
		}
	}
	return rv
}

//export govtrustP11SetAttributeValue
func govtrustP11SetAttributeValue(hSession C.CK_SESSION_HANDLE, hObject C.CK_OBJECT_HANDLE, pTemplate *C.CK_ATTRIBUTE, ulCount C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_SetAttributeValue", &rv)
	tmpl, ok := cTemplate(pTemplate, ulCount)
	if !ok {
		return ckrArgumentsBad
	}
	return C.CK_RV(mod.setAttributes(uint(hSession), uint(hObject), tmpl))
}

//export govtrustP11FindObjectsInit
func govtrustP11FindObjectsInit(hSession C.CK_SESSION_HANDLE, pTemplate *C.CK_ATTRIBUTE, ulCount C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_FindObjectsInit", &rv)
	tmpl, ok := cTemplate(pTemplate, ulCount)
	if !ok {
		return ckrArgumentsBad
	}
	return C.CK_RV(mod.findInit(uint(hSession), tmpl))
}

//export govtrustP11FindObjects
func govtrustP11FindObjects(hSession C.CK_SESSION_HANDLE, phObject *C.CK_OBJECT_HANDLE, ulMax C.CK_ULONG, pulCount *C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_FindObjects", &rv)
	if phObject == nil && ulMax > 0 || pulCount == nil {
		return ckrArgumentsBad
	}
	hs, r := mod.findObjects(uint(hSession), int(min(ulMax, 1<<20)))
	if r != ckrOK {
		return C.CK_RV(r)
	}
	dst := unsafe.Slice(phObject, len(hs))
	for i, h := range hs {
		dst[i] = C.CK_OBJECT_HANDLE(h)
	}
	*pulCount = C.CK_ULONG(len(hs))
	return ckrOK
}

//export govtrustP11FindObjectsFinal
func govtrustP11FindObjectsFinal(hSession C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	defer guard("C_FindObjectsFinal", &rv)
	return C.CK_RV(mod.findFinal(uint(hSession)))
}

//export govtrustP11DecryptInit
func govtrustP11DecryptInit(hSession C.CK_SESSION_HANDLE, pMechanism *C.CK_MECHANISM, hKey C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard("C_DecryptInit", &rv)
	mech, ok := cMechanism(pMechanism)
	if !ok {
		return ckrArgumentsBad
	}
	return C.CK_RV(mod.decryptInit(uint(hSession), mech, uint(hKey)))
}

//export govtrustP11Decrypt
func govtrustP11Decrypt(hSession C.CK_SESSION_HANDLE, pEncrypted *C.CK_BYTE, ulEncryptedLen C.CK_ULONG, pData *C.CK_BYTE, pulDataLen *C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_Decrypt", &rv)
	ct, ok := cBytes(unsafe.Pointer(pEncrypted), ulEncryptedLen)
	if !ok {
		return ckrArgumentsBad
	}
	sh := uint(hSession)
	return produce(pData, pulDataLen,
		func() (int, uint) { return mod.decryptLength(sh, ct) },
		func() ([]byte, uint) { return mod.decrypt(sh, ct) })
}

//export govtrustP11DigestInit
func govtrustP11DigestInit(hSession C.CK_SESSION_HANDLE, pMechanism *C.CK_MECHANISM) (rv C.CK_RV) {
	defer guard("C_DigestInit", &rv)
	mech, ok := cMechanism(pMechanism)
	if !ok {
		return ckrArgumentsBad
	}
	return C.CK_RV(mod.digestInit(uint(hSession), mech))
}

//export govtrustP11Digest
func govtrustP11Digest(hSession C.CK_SESSION_HANDLE, pData *C.CK_BYTE, ulDataLen C.CK_ULONG, pDigest *C.CK_BYTE, pulDigestLen *C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_Digest", &rv)
	data, ok := cBytes(unsafe.Pointer(pData), ulDataLen)
	if !ok {
		return ckrArgumentsBad
	}
	sh := uint(hSession)
	return produce(pDigest, pulDigestLen,
		func() (int, uint) { return mod.digestLength(sh) },
		func() ([]byte, uint) { return mod.digest(sh, data) })
}

//export govtrustP11DigestUpdate
func govtrustP11DigestUpdate(hSession C.CK_SESSION_HANDLE, pPart *C.CK_BYTE, ulPartLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_DigestUpdate", &rv)
	part, ok := cBytes(unsafe.Pointer(pPart), ulPartLen)
	if !ok {
		return ckrArgumentsBad
	}
	return C.CK_RV(mod.digestUpdate(uint(hSession), part))
}

//export govtrustP11DigestFinal
func govtrustP11DigestFinal(hSession C.CK_SESSION_HANDLE, pDigest *C.CK_BYTE, pulDigestLen *C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_DigestFinal", &rv)
	sh := uint(hSession)
	return produce(pDigest, pulDigestLen,
		func() (int, uint) { return mod.digestLength(sh) },
		func() ([]byte, uint) { return mod.digestFinal(sh) })
}

//export govtrustP11SignInit
func govtrustP11SignInit(hSession C.CK_SESSION_HANDLE, pMechanism *C.CK_MECHANISM, hKey C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard("C_SignInit", &rv)
	mech, ok := cMechanism(pMechanism)
	if !ok {
		return ckrArgumentsBad
	}
	return C.CK_RV(mod.signInit(uint(hSession), mech, uint(hKey)))
}

//export govtrustP11Sign
func govtrustP11Sign(hSession C.CK_SESSION_HANDLE, pData *C.CK_BYTE, ulDataLen C.CK_ULONG, pSignature *C.CK_BYTE, pulSignatureLen *C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_Sign", &rv)
	data, ok := cBytes(unsafe.Pointer(pData), ulDataLen)
	if !ok {
		return ckrArgumentsBad
	}
	sh := uint(hSession)
	return produce(pSignature, pulSignatureLen,
		func() (int, uint) { return mod.signLength(sh) },
		func() ([]byte, uint) { return mod.sign(sh, data) })
}

//export govtrustP11SignUpdate
func govtrustP11SignUpdate(hSession C.CK_SESSION_HANDLE, pPart *C.CK_BYTE, ulPartLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_SignUpdate", &rv)
	part, ok := cBytes(unsafe.Pointer(pPart), ulPartLen)
	if !ok {
		return ckrArgumentsBad
	}
	return C.CK_RV(mod.signUpdate(uint(hSession), part))
}

//export govtrustP11SignFinal
func govtrustP11SignFinal(hSession C.CK_SESSION_HANDLE, pSignature *C.CK_BYTE, pulSignatureLen *C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_SignFinal", &rv)
	sh := uint(hSession)
	return produce(pSignature, pulSignatureLen,
		func() (int, uint) { return mod.signLength(sh) },
		func() ([]byte, uint) { return mod.signFinal(sh) })
}

//export govtrustP11GenerateKeyPair
func govtrustP11GenerateKeyPair(hSession C.CK_SESSION_HANDLE, pMechanism *C.CK_MECHANISM,
	pPublicTemplate *C.CK_ATTRIBUTE, ulPublicCount C.CK_ULONG,
	pPrivateTemplate *C.CK_ATTRIBUTE, ulPrivateCount C.CK_ULONG,
	phPublicKey, phPrivateKey *C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard("C_GenerateKeyPair", &rv)
	mech, ok := cMechanism(pMechanism)
	if !ok || phPublicKey == nil || phPrivateKey == nil {
		return ckrArgumentsBad
	}
	pub, ok1 := cTemplate(pPublicTemplate, ulPublicCount)
	priv, ok2 := cTemplate(pPrivateTemplate, ulPrivateCount)
	if !ok1 || !ok2 {
		return ckrArgumentsBad
	}
	hPub, hPriv, r := mod.generateKeyPair(uint(hSession), mech, pub, priv)
	if r != ckrOK {
		return C.CK_RV(r)
	}
	*phPublicKey = C.CK_OBJECT_HANDLE(hPub)
	*phPrivateKey = C.CK_OBJECT_HANDLE(hPriv)
	return ckrOK
}

//export govtrustP11SeedRandom
func govtrustP11SeedRandom(hSession C.CK_SESSION_HANDLE, pSeed *C.CK_BYTE, ulSeedLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_SeedRandom", &rv)
	if pSeed == nil && ulSeedLen > 0 {
		return ckrArgumentsBad
	}
	return C.CK_RV(mod.seedRandom(uint(hSession)))
}

//export govtrustP11GenerateRandom
func govtrustP11GenerateRandom(hSession C.CK_SESSION_HANDLE, pRandom *C.CK_BYTE, ulLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard("C_GenerateRandom", &rv)
	if pRandom == nil && ulLen > 0 || ulLen > maxInput {
		return ckrArgumentsBad
	}
	buf := make([]byte, int(ulLen))
	if r := mod.generateRandom(uint(hSession), buf); r != ckrOK {
		return C.CK_RV(r)
	}
	if len(buf) > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(pRandom)), len(buf)), buf)
	}
	return ckrOK
}
