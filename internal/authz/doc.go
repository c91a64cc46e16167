// Package authz is govtrust's security middleware: it authenticates every
// caller, decides what the caller may do, and audits the decision, once, for
// HTTP and for the message bus, so no service writes its own checks.
//
// Identities. A request carries one principal: an account (person,
// application or system) with an organisation, roles and a clearance level.
// It proves itself with a bearer API token (random 256 bits, stored only as
// its SM3 hash, with a name, scopes and an expiry), a TLS client certificate
// issued by a trusted CA (chain and revocation checked; the certificate
// itself, by the SHA-256 of its DER, is bound to an account), or, later, an
// SSO access token through the Verifier seam.
//
// Roles and policies. Roles are those of internal/authz/policy, with the
// three separated administrator roles (三员分立); combinations that must not
// be held together are refused when granted, and the attempt is audited.
// Decisions are made by the cedar policy engine of internal/authz/policy and
// name the policy that made them.
//
// Declared routes. Services register HTTP handlers through Mux, which takes
// a Rule for every route: the action it performs and how to find the resource,
// or an explicit public declaration with its reason. A test walks every route
// of a running node and fails on one without a declaration.
//
// Integrity. Accounts, role bindings, tokens and certificate bindings carry an
// HMAC-SM3 over their canonical content, under an integrity key that lives
// wrapped by a key of the key manager. A row edited in the database is
// detected, refused, and the refusal audited.
package authz
