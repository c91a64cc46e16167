// Package audit is govtrust's tamper-evident audit log.
//
// Every record (sequence number, UTC time, node, actor, action, object,
// outcome, request ID, details) is appended in the same database transaction
// as the change it records, so an action whose audit record cannot be written
// is rolled back and does not happen. Records form one hash chain:
//
//	hash[n] = SM3(hash[n-1] || canonical(record[n])),   hash[0] = 32 zero bytes
//
// and a head row holding the last sequence number and hash is updated with
// each append. Verify walks the chain offline and names, by sequence number,
// an edited row (its hash no longer matches its content), a deleted row (a gap
// in the sequence), a rewritten predecessor (a broken link) and a truncated
// tail (the head is ahead of the last row).
//
// A chain rewritten wholesale, every hash recomputed and the head updated,
// passes that walk: the hashes alone prove only internal consistency. Signed
// checkpoints close the gap (ARCHITECTURE.md §4, RELIABILITY.md 8.3 e). A
// Checkpointer signs the head (sequence number and hash) with the platform's
// audit key, reached through the hsm SPI as a crypto.Signer, and stores the
// checkpoint together with an "audit.checkpoint" record. VerifyCheckpoints
// checks every checkpoint's signature under a public key the caller trusts
// (never one read from the database, which a forger could replace) and that
// the chain still holds the signed hash at the signed sequence number, so a
// rewrite of any record at or before a checkpoint is named by that
// checkpoint. Records after the newest checkpoint are reported as the
// unprotected tail.
package audit
