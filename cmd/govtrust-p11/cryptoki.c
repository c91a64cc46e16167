/*
 * cryptoki.c: the C side of govtrust-p11. It builds the CK_FUNCTION_LIST
 * (PKCS #11 v2.40 Base §5.4, C_GetFunctionList) out of static trampolines
 * that call the Go functions exported from exports.go. Functions the token
 * does not implement answer CKR_FUNCTION_NOT_SUPPORTED here, without
 * entering Go.
 *
 * Only C_GetFunctionList is exported from the shared object. The list points
 * at static functions, so a host program that defines its own C_Sign (for
 * example by linking another PKCS #11 library statically) cannot interpose
 * on this module's entry points.
 */
#include <stddef.h>
#include "cryptoki.h"
#include "_cgo_export.h"

#define RV_OK 0x0UL
#define RV_ARGUMENTS_BAD 0x7UL
#define RV_FUNCTION_NOT_SUPPORTED 0x54UL

/* Implemented in Go. */
static CK_RV tInitialize(CK_VOID_PTR a) { return govtrustP11Initialize(a); }
static CK_RV tFinalize(CK_VOID_PTR r) { return govtrustP11Finalize(r); }
static CK_RV tGetInfo(CK_INFO_PTR i) { return govtrustP11GetInfo(i); }
static CK_RV tGetFunctionList(CK_FUNCTION_LIST_PTR_PTR pp) { return C_GetFunctionList(pp); }
static CK_RV tGetSlotList(CK_BBOOL p, CK_SLOT_ID_PTR l, CK_ULONG_PTR n) { return govtrustP11GetSlotList(p, l, n); }
static CK_RV tGetSlotInfo(CK_SLOT_ID s, CK_SLOT_INFO_PTR i) { return govtrustP11GetSlotInfo(s, i); }
static CK_RV tGetTokenInfo(CK_SLOT_ID s, CK_TOKEN_INFO_PTR i) { return govtrustP11GetTokenInfo(s, i); }
static CK_RV tGetMechanismList(CK_SLOT_ID s, CK_MECHANISM_TYPE_PTR l, CK_ULONG_PTR n) { return govtrustP11GetMechanismList(s, l, n); }
static CK_RV tGetMechanismInfo(CK_SLOT_ID s, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO_PTR i) { return govtrustP11GetMechanismInfo(s, t, i); }
static CK_RV tInitToken(CK_SLOT_ID s, CK_UTF8CHAR_PTR p, CK_ULONG n, CK_UTF8CHAR_PTR l) { return govtrustP11InitToken(s, p, n, l); }
static CK_RV tInitPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR p, CK_ULONG n) { return govtrustP11InitPIN(h, p, n); }
static CK_RV tSetPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR o, CK_ULONG on, CK_UTF8CHAR_PTR p, CK_ULONG pn) { return govtrustP11SetPIN(h, o, on, p, pn); }
static CK_RV tOpenSession(CK_SLOT_ID s, CK_FLAGS f, CK_VOID_PTR a, CK_NOTIFY cb, CK_SESSION_HANDLE_PTR h) { return govtrustP11OpenSession(s, f, a, cb, h); }
static CK_RV tCloseSession(CK_SESSION_HANDLE h) { return govtrustP11CloseSession(h); }
static CK_RV tCloseAllSessions(CK_SLOT_ID s) { return govtrustP11CloseAllSessions(s); }
static CK_RV tGetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR i) { return govtrustP11GetSessionInfo(h, i); }
static CK_RV tLogin(CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR_PTR p, CK_ULONG n) { return govtrustP11Login(h, u, p, n); }
static CK_RV tLogout(CK_SESSION_HANDLE h) { return govtrustP11Logout(h); }
static CK_RV tCreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o) { return govtrustP11CreateObject(h, t, n, o); }
static CK_RV tDestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o) { return govtrustP11DestroyObject(h, o); }
static CK_RV tGetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) { return govtrustP11GetAttributeValue(h, o, t, n); }
static CK_RV tSetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) { return govtrustP11SetAttributeValue(h, o, t, n); }
static CK_RV tFindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n) { return govtrustP11FindObjectsInit(h, t, n); }
static CK_RV tFindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR o, CK_ULONG m, CK_ULONG_PTR n) { return govtrustP11FindObjects(h, o, m, n); }
static CK_RV tFindObjectsFinal(CK_SESSION_HANDLE h) { return govtrustP11FindObjectsFinal(h); }
static CK_RV tDecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) { return govtrustP11DecryptInit(h, m, k); }
static CK_RV tDecrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR c, CK_ULONG cn, CK_BYTE_PTR d, CK_ULONG_PTR dn) { return govtrustP11Decrypt(h, c, cn, d, dn); }
static CK_RV tDigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m) { return govtrustP11DigestInit(h, m); }
static CK_RV tDigest(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dn, CK_BYTE_PTR o, CK_ULONG_PTR on) { return govtrustP11Digest(h, d, dn, o, on); }
static CK_RV tDigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR p, CK_ULONG n) { return govtrustP11DigestUpdate(h, p, n); }
static CK_RV tDigestFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR o, CK_ULONG_PTR on) { return govtrustP11DigestFinal(h, o, on); }
static CK_RV tSignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) { return govtrustP11SignInit(h, m, k); }
static CK_RV tSign(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dn, CK_BYTE_PTR s, CK_ULONG_PTR sn) { return govtrustP11Sign(h, d, dn, s, sn); }
static CK_RV tSignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR p, CK_ULONG n) { return govtrustP11SignUpdate(h, p, n); }
static CK_RV tSignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR s, CK_ULONG_PTR sn) { return govtrustP11SignFinal(h, s, sn); }
static CK_RV tGenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn,
	CK_ATTRIBUTE_PTR kt, CK_ULONG kn, CK_OBJECT_HANDLE_PTR ph, CK_OBJECT_HANDLE_PTR kh) {
	return govtrustP11GenerateKeyPair(h, m, pt, pn, kt, kn, ph, kh);
}
static CK_RV tSeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR s, CK_ULONG n) { return govtrustP11SeedRandom(h, s, n); }
static CK_RV tGenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR r, CK_ULONG n) { return govtrustP11GenerateRandom(h, r, n); }

/* Not implemented: each has the prototype of its slot and says so. */
static CK_RV nGetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR s, CK_ULONG_PTR n) { (void)h; (void)s; (void)n; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nSetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR s, CK_ULONG n, CK_OBJECT_HANDLE e, CK_OBJECT_HANDLE a) { (void)h; (void)s; (void)n; (void)e; (void)a; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nCopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR p) { (void)h; (void)o; (void)t; (void)n; (void)p; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nGetObjectSize(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ULONG_PTR n) { (void)h; (void)o; (void)n; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nCryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) { (void)h; (void)m; (void)k; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nInOut(CK_SESSION_HANDLE h, CK_BYTE_PTR i, CK_ULONG in, CK_BYTE_PTR o, CK_ULONG_PTR on) { (void)h; (void)i; (void)in; (void)o; (void)on; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nOut(CK_SESSION_HANDLE h, CK_BYTE_PTR o, CK_ULONG_PTR on) { (void)h; (void)o; (void)on; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nIn(CK_SESSION_HANDLE h, CK_BYTE_PTR i, CK_ULONG in) { (void)h; (void)i; (void)in; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nInIn(CK_SESSION_HANDLE h, CK_BYTE_PTR i, CK_ULONG in, CK_BYTE_PTR s, CK_ULONG sn) { (void)h; (void)i; (void)in; (void)s; (void)sn; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nDigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k) { (void)h; (void)k; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nGenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k) { (void)h; (void)m; (void)t; (void)n; (void)k; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nWrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE w, CK_OBJECT_HANDLE k, CK_BYTE_PTR o, CK_ULONG_PTR on) { (void)h; (void)m; (void)w; (void)k; (void)o; (void)on; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nUnwrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE u, CK_BYTE_PTR w, CK_ULONG wn, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k) { (void)h; (void)m; (void)u; (void)w; (void)wn; (void)t; (void)n; (void)k; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nDeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k) { (void)h; (void)m; (void)b; (void)t; (void)n; (void)k; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nSession(CK_SESSION_HANDLE h) { (void)h; return RV_FUNCTION_NOT_SUPPORTED; }
static CK_RV nWaitForSlotEvent(CK_FLAGS f, CK_SLOT_ID_PTR s, CK_VOID_PTR r) { (void)f; (void)s; (void)r; return RV_FUNCTION_NOT_SUPPORTED; }

static CK_FUNCTION_LIST functionList = {
	.version = {2, 40},
	.C_Initialize = tInitialize,
	.C_Finalize = tFinalize,
	.C_GetInfo = tGetInfo,
	.C_GetFunctionList = tGetFunctionList,
	.C_GetSlotList = tGetSlotList,
	.C_GetSlotInfo = tGetSlotInfo,
	.C_GetTokenInfo = tGetTokenInfo,
	.C_GetMechanismList = tGetMechanismList,
	.C_GetMechanismInfo = tGetMechanismInfo,
	.C_InitToken = tInitToken,
	.C_InitPIN = tInitPIN,
	.C_SetPIN = tSetPIN,
	.C_OpenSession = tOpenSession,
	.C_CloseSession = tCloseSession,
	.C_CloseAllSessions = tCloseAllSessions,
	.C_GetSessionInfo = tGetSessionInfo,
	.C_GetOperationState = nGetOperationState,
	.C_SetOperationState = nSetOperationState,
	.C_Login = tLogin,
	.C_Logout = tLogout,
	.C_CreateObject = tCreateObject,
	.C_CopyObject = nCopyObject,
	.C_DestroyObject = tDestroyObject,
	.C_GetObjectSize = nGetObjectSize,
	.C_GetAttributeValue = tGetAttributeValue,
	.C_SetAttributeValue = tSetAttributeValue,
	.C_FindObjectsInit = tFindObjectsInit,
	.C_FindObjects = tFindObjects,
	.C_FindObjectsFinal = tFindObjectsFinal,
	.C_EncryptInit = nCryptInit,
	.C_Encrypt = nInOut,
	.C_EncryptUpdate = nInOut,
	.C_EncryptFinal = nOut,
	.C_DecryptInit = tDecryptInit,
	.C_Decrypt = tDecrypt,
	.C_DecryptUpdate = nInOut,
	.C_DecryptFinal = nOut,
	.C_DigestInit = tDigestInit,
	.C_Digest = tDigest,
	.C_DigestUpdate = tDigestUpdate,
	.C_DigestKey = nDigestKey,
	.C_DigestFinal = tDigestFinal,
	.C_SignInit = tSignInit,
	.C_Sign = tSign,
	.C_SignUpdate = tSignUpdate,
	.C_SignFinal = tSignFinal,
	.C_SignRecoverInit = nCryptInit,
	.C_SignRecover = nInOut,
	.C_VerifyInit = nCryptInit,
	.C_Verify = nInIn,
	.C_VerifyUpdate = nIn,
	.C_VerifyFinal = nIn,
	.C_VerifyRecoverInit = nCryptInit,
	.C_VerifyRecover = nInOut,
	.C_DigestEncryptUpdate = nInOut,
	.C_DecryptDigestUpdate = nInOut,
	.C_SignEncryptUpdate = nInOut,
	.C_DecryptVerifyUpdate = nInOut,
	.C_GenerateKey = nGenerateKey,
	.C_GenerateKeyPair = tGenerateKeyPair,
	.C_WrapKey = nWrapKey,
	.C_UnwrapKey = nUnwrapKey,
	.C_DeriveKey = nDeriveKey,
	.C_SeedRandom = tSeedRandom,
	.C_GenerateRandom = tGenerateRandom,
	.C_GetFunctionStatus = nSession,
	.C_CancelFunction = nSession,
	.C_WaitForSlotEvent = nWaitForSlotEvent,
};

__attribute__((visibility("default")))
CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList) {
	if (ppFunctionList == NULL)
		return RV_ARGUMENTS_BAD;
	*ppFunctionList = &functionList;
	return RV_OK;
}
