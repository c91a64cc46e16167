/*
 * abicheck: a C client that checks the calling conventions of PKCS #11
 * v2.40 Base §5.2 and §5.4 that github.com/miekg/pkcs11 hides from Go tests
 * (length queries, CKR_BUFFER_TOO_SMALL, per-attribute results of
 * C_GetAttributeValue, C_Initialize argument checks).
 *
 * usage: abicheck MODULE.so USER-PIN KEY-LABEL
 * The token must hold an SM2 private key labelled KEY-LABEL. Prints one line
 * per failed check and exits 1 if any failed, else prints "ok".
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include "cryptoki.h"

static int failures;

#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

#define UNAVAILABLE (~0UL)

static CK_RV noMutex(CK_VOID_PTR m) { (void)m; return 0; }

int main(int argc, char **argv) {
	if (argc != 4) {
		fprintf(stderr, "usage: abicheck MODULE PIN LABEL\n");
		return 2;
	}
	const char *pin = argv[2], *label = argv[3];
	void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 2;
	}
	CK_RV (*getList)(CK_FUNCTION_LIST_PTR_PTR) = (CK_RV (*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(lib, "C_GetFunctionList");
	if (getList == NULL) {
		fprintf(stderr, "no C_GetFunctionList\n");
		return 2;
	}
	CK_FUNCTION_LIST_PTR f = NULL;
	CHECK(getList(NULL) == 0x7, "C_GetFunctionList(NULL) must be CKR_ARGUMENTS_BAD");
	CHECK(getList(&f) == 0 && f != NULL, "C_GetFunctionList");
	CHECK(f->version.major == 2 && f->version.minor == 40, "function list version %d.%d", f->version.major, f->version.minor);
	CHECK(f->C_GetFunctionList != NULL && f->C_WaitForSlotEvent != NULL, "function list has holes");

	/* §5.4 C_Initialize. */
	CK_ULONG n = 0;
	CHECK(f->C_GetSlotList(0, NULL, &n) == 0x190, "C_GetSlotList before C_Initialize must be CKR_CRYPTOKI_NOT_INITIALIZED");
	CK_C_INITIALIZE_ARGS args;
	memset(&args, 0, sizeof args);
	args.pReserved = &args;
	CHECK(f->C_Initialize(&args) == 0x7, "pReserved set must be CKR_ARGUMENTS_BAD");
	memset(&args, 0, sizeof args);
	args.LockMutex = noMutex;
	CHECK(f->C_Initialize(&args) == 0x7, "partial mutex callbacks must be CKR_ARGUMENTS_BAD");
	/* The Go runtime in the module always creates OS threads. */
	memset(&args, 0, sizeof args);
	args.flags = 0x1 | 0x2; /* CKF_LIBRARY_CANT_CREATE_OS_THREADS | CKF_OS_LOCKING_OK */
	CHECK(f->C_Initialize(&args) == 0x9, "CKF_LIBRARY_CANT_CREATE_OS_THREADS must be CKR_NEED_TO_CREATE_THREADS");
	CHECK(f->C_GetSlotList(0, NULL, &n) == 0x190, "a refused C_Initialize must leave the module uninitialised");
	memset(&args, 0, sizeof args);
	args.flags = 0x2; /* CKF_OS_LOCKING_OK */
	CHECK(f->C_Initialize(&args) == 0, "C_Initialize(CKF_OS_LOCKING_OK)");
	CHECK(f->C_Initialize(NULL) == 0x191, "second C_Initialize must be CKR_CRYPTOKI_ALREADY_INITIALIZED");

	/* §5.2 length queries on a list. */
	CK_SLOT_ID slots[4];
	n = 0;
	CHECK(f->C_GetSlotList(1, NULL, &n) == 0 && n == 1, "slot count query: n=%lu", n);
	n = 0;
	CHECK(f->C_GetSlotList(1, slots, &n) == 0x150 && n == 1, "zero-length slot buffer must be CKR_BUFFER_TOO_SMALL with n=1");
	n = 4;
	CHECK(f->C_GetSlotList(1, slots, &n) == 0 && n == 1 && slots[0] == 0, "slot list");

	CK_SESSION_HANDLE s;
	CHECK(f->C_OpenSession(0, 0, NULL, NULL, &s) == 0xB4, "no CKF_SERIAL_SESSION must be CKR_SESSION_PARALLEL_NOT_SUPPORTED");
	CHECK(f->C_OpenSession(0, 0x6, NULL, NULL, &s) == 0, "C_OpenSession");
	CHECK(f->C_Login(s, 1, (CK_UTF8CHAR_PTR)pin, strlen(pin)) == 0, "C_Login");

	CK_OBJECT_CLASS cls = 3; /* CKO_PRIVATE_KEY */
	CK_ATTRIBUTE findT[] = {
		{0x0 /* CKA_CLASS */, &cls, sizeof cls},
		{0x3 /* CKA_LABEL */, (CK_VOID_PTR)label, strlen(label)},
	};
	CK_OBJECT_HANDLE key = 0;
	CHECK(f->C_FindObjectsInit(s, findT, 2) == 0, "C_FindObjectsInit");
	CHECK(f->C_FindObjectsInit(s, findT, 2) == 0x90, "second C_FindObjectsInit must be CKR_OPERATION_ACTIVE");
	n = 0;
	CHECK(f->C_FindObjects(s, &key, 1, &n) == 0 && n == 1, "find the key: n=%lu", n);
	CHECK(f->C_FindObjectsFinal(s) == 0, "C_FindObjectsFinal");
	CHECK(f->C_FindObjects(s, &key, 1, &n) == 0x91, "C_FindObjects after Final must be CKR_OPERATION_NOT_INITIALIZED");

	/* §5.7 C_GetAttributeValue: every attribute is processed. */
	CK_BYTE value[64], id[4], sign = 0xff;
	CK_ATTRIBUTE t[] = {
		{0x3 /* CKA_LABEL */, NULL, 0},           /* length query */
		{0x11 /* CKA_VALUE */, value, sizeof value}, /* sensitive */
		{0x7fff0001UL, value, sizeof value},       /* unknown type */
		{0x102 /* CKA_ID */, id, sizeof id},        /* SHA-1 key id is 20 bytes: too small */
		{0x108 /* CKA_SIGN */, &sign, 1},
	};
	CK_RV rv = f->C_GetAttributeValue(s, key, t, 5);
	CHECK(rv == 0x11 || rv == 0x12 || rv == 0x150, "C_GetAttributeValue rv %#lx, want SENSITIVE, TYPE_INVALID or BUFFER_TOO_SMALL", rv);
	CHECK(t[0].ulValueLen == strlen(label), "label length %lu", t[0].ulValueLen);
	CHECK(t[1].ulValueLen == UNAVAILABLE, "CKA_VALUE length must be CK_UNAVAILABLE_INFORMATION, got %lu", t[1].ulValueLen);
	CHECK(t[2].ulValueLen == UNAVAILABLE, "unknown attribute length must be CK_UNAVAILABLE_INFORMATION");
	CHECK(t[3].ulValueLen == UNAVAILABLE, "short CKA_ID buffer length must be CK_UNAVAILABLE_INFORMATION");
	CHECK(t[4].ulValueLen == 1 && sign == 1, "CKA_SIGN must still be returned: len %lu value %d", t[4].ulValueLen, sign);
	CK_ATTRIBUTE one = {0x102, NULL, 0};
	CHECK(f->C_GetAttributeValue(s, key, &one, 1) == 0 && one.ulValueLen == 20, "CKA_ID length query");

	/* §5.2 single-part output: NULL, short buffer, then the real call. */
	CK_MECHANISM m = {0x80008000UL, NULL, 0};
	CK_BYTE e[32], sig[128];
	memset(e, 0x5a, sizeof e);
	CHECK(f->C_SignInit(s, &m, key) == 0, "C_SignInit");
	CHECK(f->C_SignInit(s, &m, key) == 0x90, "second C_SignInit must be CKR_OPERATION_ACTIVE");
	n = 0;
	CHECK(f->C_Sign(s, e, sizeof e, NULL, &n) == 0 && n == 64, "signature length query: %lu", n);
	n = 10;
	CHECK(f->C_Sign(s, e, sizeof e, sig, &n) == 0x150 && n == 64, "short signature buffer must be CKR_BUFFER_TOO_SMALL with n=64");
	n = sizeof sig;
	CHECK(f->C_Sign(s, e, sizeof e, sig, &n) == 0 && n == 64, "C_Sign after the queries: n=%lu", n);
	n = sizeof sig;
	CHECK(f->C_Sign(s, e, sizeof e, sig, &n) == 0x91, "C_Sign after completion must be CKR_OPERATION_NOT_INITIALIZED");

	CK_SESSION_INFO si;
	CHECK(f->C_GetSessionInfo(s, &si) == 0 && si.state == 3 && si.flags == 0x6, "session info state %lu flags %#lx", si.state, si.flags);
	CK_TOKEN_INFO ti;
	CHECK(f->C_GetTokenInfo(0, &ti) == 0 && ti.ulSessionCount == 1 && ti.ulRwSessionCount == 1, "token info session counts");
	CHECK(f->C_CloseSession(s) == 0, "C_CloseSession");
	CHECK(f->C_CloseSession(s) == 0xB3, "closing twice must be CKR_SESSION_HANDLE_INVALID");
	CHECK(f->C_Finalize(&args) == 0x7, "C_Finalize(non-NULL) must be CKR_ARGUMENTS_BAD");
	CHECK(f->C_Finalize(NULL) == 0, "C_Finalize");
	CHECK(f->C_Finalize(NULL) == 0x190, "second C_Finalize must be CKR_CRYPTOKI_NOT_INITIALIZED");

	if (failures) {
		printf("%d checks failed\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
