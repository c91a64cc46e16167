package main

// Constants of PKCS #11 v2.40 used by this module, from the Base
// Specification §3 (types) and §5.1 (return values) and the Current
// Mechanisms Specification §2.3 (EC). They are Go constants rather than C
// macros so the token logic in this package needs no cgo.

// Return values (Base §5.1).
const (
	ckrOK                          = 0x000
	ckrHostMemory                  = 0x002
	ckrSlotIDInvalid               = 0x003
	ckrGeneralError                = 0x005
	ckrFunctionFailed              = 0x006
	ckrArgumentsBad                = 0x007
	ckrCantLock                    = 0x00A
	ckrAttributeReadOnly           = 0x010
	ckrAttributeSensitive          = 0x011
	ckrAttributeTypeInvalid        = 0x012
	ckrAttributeValueInvalid       = 0x013
	ckrActionProhibited            = 0x01B
	ckrDataInvalid                 = 0x020
	ckrDataLenRange                = 0x021
	ckrDeviceError                 = 0x030
	ckrEncryptedDataInvalid        = 0x040
	ckrEncryptedDataLenRange       = 0x041
	ckrFunctionNotSupported        = 0x054
	ckrKeyHandleInvalid            = 0x060
	ckrKeyTypeInconsistent         = 0x063
	ckrKeyFunctionNotPermitted     = 0x068
	ckrMechanismInvalid            = 0x070
	ckrMechanismParamInvalid       = 0x071
	ckrObjectHandleInvalid         = 0x082
	ckrOperationActive             = 0x090
	ckrOperationNotInitialized     = 0x091
	ckrPINIncorrect                = 0x0A0
	ckrPINInvalid                  = 0x0A1
	ckrPINLenRange                 = 0x0A2
	ckrPINLocked                   = 0x0A4
	ckrSessionHandleInvalid        = 0x0B3
	ckrSessionParallelNotSupported = 0x0B4
	ckrSessionReadOnly             = 0x0B5
	ckrSessionExists               = 0x0B6
	ckrSessionReadOnlyExists       = 0x0B7
	ckrSessionReadWriteSOExists    = 0x0B8
	ckrTemplateIncomplete          = 0x0D0
	ckrTemplateInconsistent        = 0x0D1
	ckrTokenNotPresent             = 0x0E0
	ckrTokenNotRecognized          = 0x0E1
	ckrUserAlreadyLoggedIn         = 0x100
	ckrUserNotLoggedIn             = 0x101
	ckrUserPINNotInitialized       = 0x102
	ckrUserTypeInvalid             = 0x103
	ckrUserAnotherAlreadyLoggedIn  = 0x104
	ckrRandomSeedNotSupported      = 0x120
	ckrCurveNotSupported           = 0x140
	ckrBufferTooSmall              = 0x150
	ckrCryptokiNotInitialized      = 0x190
	ckrCryptokiAlreadyInitialized  = 0x191
)

// ckUnavailableInformation is CK_UNAVAILABLE_INFORMATION, ~0 as a CK_ULONG
// (Base §3.1), returned in ulValueLen for attributes that cannot be read.
const ckUnavailableInformation = ^uint(0)

// Flags (Base §3.1–§3.6, Mechanisms §2.3.2).
const (
	ckfTokenPresent = 0x1 // CK_SLOT_INFO

	ckfRNG                = 0x00000001 // CK_TOKEN_INFO
	ckfLoginRequired      = 0x00000004
	ckfUserPINInitialized = 0x00000008
	ckfTokenInitialized   = 0x00000400
	ckfUserPINCountLow    = 0x00010000
	ckfUserPINFinalTry    = 0x00020000
	ckfUserPINLocked      = 0x00040000
	ckfSOPINCountLow      = 0x00100000
	ckfSOPINFinalTry      = 0x00200000
	ckfSOPINLocked        = 0x00400000

	ckfRWSession     = 0x2 // CK_SESSION_INFO
	ckfSerialSession = 0x4

	ckfDecrypt         = 0x00000200 // CK_MECHANISM_INFO
	ckfDigest          = 0x00000400
	ckfSign            = 0x00000800
	ckfGenerateKeyPair = 0x00010000
	ckfECFP            = 0x00100000
	ckfECNamedCurve    = 0x00800000
	ckfECUncompress    = 0x01000000
)

// Session states (Base §5.6, CK_STATE).
const (
	cksROPublicSession = 0
	cksROUserFunctions = 1
	cksRWPublicSession = 2
	cksRWUserFunctions = 3
	cksRWSOFunctions   = 4
)

// User types (Base §3.3, CK_USER_TYPE).
const (
	ckuSO              = 0
	ckuUser            = 1
	ckuContextSpecific = 2
)

// Object classes, key and certificate types (Base §4).
const (
	ckoData        = 0
	ckoCertificate = 1
	ckoPublicKey   = 2
	ckoPrivateKey  = 3

	ckkEC = 3
	// ckkSM2 is the TASS vendor-defined key type for SM2 (GM-STANDARDS.md §8).
	ckkSM2 = 0x80000004

	ckcX509 = 0
)

// Attribute types (Base §4).
const (
	ckaClass               = 0x000
	ckaToken               = 0x001
	ckaPrivate             = 0x002
	ckaLabel               = 0x003
	ckaApplication         = 0x010
	ckaValue               = 0x011
	ckaObjectID            = 0x012
	ckaCertificateType     = 0x080
	ckaIssuer              = 0x081
	ckaSerialNumber        = 0x082
	ckaTrusted             = 0x086
	ckaCertificateCategory = 0x087
	ckaKeyType             = 0x100
	ckaSubject             = 0x101
	ckaID                  = 0x102
	ckaSensitive           = 0x103
	ckaEncrypt             = 0x104
	ckaDecrypt             = 0x105
	ckaWrap                = 0x106
	ckaUnwrap              = 0x107
	ckaSign                = 0x108
	ckaSignRecover         = 0x109
	ckaVerify              = 0x10A
	ckaVerifyRecover       = 0x10B
	ckaDerive              = 0x10C
	ckaStartDate           = 0x110
	ckaEndDate             = 0x111
	ckaPublicKeyInfo       = 0x129
	ckaExtractable         = 0x162
	ckaLocal               = 0x163
	ckaNeverExtractable    = 0x164
	ckaAlwaysSensitive     = 0x165
	ckaKeyGenMechanism     = 0x166
	ckaModifiable          = 0x170
	ckaCopyable            = 0x171
	ckaDestroyable         = 0x172
	ckaECParams            = 0x180
	ckaECPoint             = 0x181
	ckaAlwaysAuthenticate  = 0x202
	ckaWrapWithTrusted     = 0x210
)

// Mechanisms. The standard ones are from the Current Mechanisms
// Specification v2.40 (§2.3 EC, §2.16 SHA-2); the vendor-defined ones are the
// TASS table of GM-STANDARDS.md §8, the same table hsm/pkcs11 uses.
const (
	ckmSHA256        = 0x250
	ckmECKeyPairGen  = 0x1040
	ckmECDSA         = 0x1041
	ckmECDSASHA256   = 0x1044
	ckmSM2KeyPairGen = 0x80008001 // TASS: SM2 key pair generation
	ckmSM2Sign       = 0x80008000 // TASS: SM2 signature of a 32-byte e, raw r||s
	ckmSM3SM2        = 0x80008100 // TASS: SM3-with-SM2 over the message, Z with the default ID
	ckmSM2Encrypt    = 0x80008200 // TASS: SM2 public-key encryption (GM/T 0009 ASN.1 ciphertext)
	ckmSM3           = 0x80000005 // TASS: SM3 digest
)
