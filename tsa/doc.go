// Package tsa is the platform's RFC 3161 time-stamping authority.
//
// It answers POST /tsa (profile sm2: SM2/SM3 tokens, the default) and
// POST /tsa/{profile} (ecdsa: ECDSA P-256/SHA-256 tokens) on the plain HTTP
// listener, with application/timestamp-query in and
// application/timestamp-reply out (RFC 3161 §3.4). Every failure is a
// TimeStampResp with status rejection and the PKIFailureInfo bit of RFC 3161
// §2.4.2, never an HTTP 5xx; only a body over tsa.max_body_bytes is refused
// with 413 before it is read.
//
// Each profile has a time-stamping unit: a key created through the key
// manager under the key service "tsa" (ARCHITECTURE.md §3: the CA's keys
// cannot be used here, nor these by the CA) and a certificate the platform
// CA issues under its built-in profile tsa (critical EKU timeStamping
// only), obtained at first start through the Issuer interface that
// cmd/govtrust wires to the CA. A unit signs for keyUsePeriod, or until
// its certificate ends within expiryMargin when a CA can issue one that
// ends later, then a new unit takes over (rollover); the retired
// certificates stay published at GET /tsa/{profile}/certs so tokens made
// before verify after. No token is made outside the signing unit's
// certificate validity (systemFailure).
//
// Serials are 17 octets: 0x01, the time in milliseconds (48 bits) and 80
// random bits, unique under a database constraint: no counter has to
// survive a crash, so no serial can be reused after one. Every token is
// recorded (serial, imprint, genTime, policy, the token) before it is
// returned (RELIABILITY.md I3) by a group-commit recorder (record.go):
// concurrent requests share one transaction of a few multi-row INSERTs,
// under load a batch waits up to 3 ms for more, and batches are pipelined:
// the next commits while this one's fsync runs, and a batch's callers are
// answered once it is durable (store.DB.TxPipelined).
//
// Time comes from the node clock, checked against the configured NTP
// servers (ntp.go): when the offset exceeds the stated accuracy or the
// servers are lost, requests get timeNotAvailable and /readyz says why.
package tsa
