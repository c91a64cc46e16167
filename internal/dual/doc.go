// Package dual is govtrust's dual-control (maker–checker, 双人控制) primitive:
// a sensitive operation — key recovery, a CA key ceremony, making a seal — is
// requested by one person and runs only after m other people have approved
// exactly that request.
//
// Why, and where the rules come from:
//
//   - CA/Browser Forum Baseline Requirements §5.2.2 (and the Federal Bridge CP
//     §5.2.2, §6.2.4): CA private keys are "backed up, stored, and recovered
//     only by personnel in Trusted Roles using, at least, dual control".
//   - NIST SP 800-57 Part 1 Rev. 5 §2.1 defines dual control as two or more
//     separate entities operating in concert so that no single one can use
//     the protected function alone.
//   - NIAP Protection Profile for Certification Authorities v2.1,
//     FDP_CER_EXT.3 (issuance approval) and FMT_SMR.2 (separated roles); EJBCA,
//     evaluated against it, has "approval sessions" — multi-person approval of
//     issuance, revocation and CA activation — with their own system tests
//     (RELIABILITY.md §1.5).
//   - GM/T 0034-2014 §12.4/§12.5 (user and judicial key recovery by the KMC).
//   - ACCEPTANCE.md K-01: the requester approving their own request and one
//     approver where two are required are refused; two distinct approvers let
//     the operation run.
//
// The model. [Store.Create] records a request: its kind, the requester, the
// SM3 hash of the exact canonical request bytes (the payload), the number of
// approvers required and an expiry. [Store.Approve] adds one approval; the
// approver states the payload hash they approve, so nobody approves a request
// other than the one they were shown, and the requester can never approve.
// Each approver counts once (a unique key on request and approver, checked
// again inside the transaction). One [Store.Reject] closes the request for
// good, whether by an approver's veto or the requester's withdrawal.
//
// The operation itself calls [Store.Execute] inside its own store transaction
// just before acting, with the payload it is about to act on. Execute checks
// that SM3(payload) is the approved hash, that enough distinct approvers other
// than the requester approved, that the request has not expired and has not
// run before, and marks it executed with a conditional UPDATE: the approval is
// single-use, exactly one of two concurrent executions wins, and the operation
// and the consumption of its approval commit together or not at all.
// [Store.Do] wraps that for the common case.
//
// Everything is audited (internal/audit) with the object "dual/<id>": every
// change in the same transaction as the change, and every refused attempt
// (self-approval, duplicate approver, wrong payload, expired, closed, not yet
// approved, already executed) in a transaction of its own that changes nothing
// else. Audit details carry the payload's kind and SM3 hash, never the payload.
//
// Role checks (who may request or approve which kind) belong to the caller's
// authorization layer; ApproverRole is recorded for display only.
package dual
