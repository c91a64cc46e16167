// Package policy is govtrust's authorization decision engine: given who asks
// (a Principal), what for (an action of the catalogue) and on what (a
// Resource), it answers allow or deny and names the policy that decided.
// Decisions are made by Cedar (github.com/cedar-policy/cedar-go); package
// authz calls it from its HTTP and bus middleware and audits the answer.
//
// # Roles and 三员分立
//
// The platform separates administration into three roles held by different
// people (三员分立, the separation of system, security and audit
// administrators that Chinese graded-protection practice requires and that
// NIAP's CA protection profile states as FMT_SMR.2): the system
// administrator (sysadmin) runs the node, the security administrator
// (secadmin) manages accounts, roles, tokens, policies and HSM keys, and the
// audit administrator (auditor) reads the audit log and changes nothing.
// The system administrator cannot read the audit records it is audited on
// (only the signed checkpoints, to see that the log grows and is intact).
// Beside them: CA operator, registration officer (RA), key recovery officer,
// seal administrator, department official, department application, citizen
// and enterprise operator. CheckRoles refuses role sets one account must not
// hold (the auditor with anything else; the CA operator with the RA; an
// administrator with a PKI officer role; ...), each rule documented with its
// source; the platform policies carry the same rules as forbids, so an
// account that holds such a set anyway is denied everything.
//
// # Actions
//
// Every action the platform checks is declared once in the catalogue
// (Register, Lookup, All) with a class: read, write, admin, audit, approve or
// key. Policies grant and forbid by class as well as by name, so a new write
// action is out of the auditor's reach the moment it is declared.
//
// # The Cedar model
//
//	principal  Govtrust::Account::"<id>"    {id, org, roles: Set<String>, clearance: Long}
//	action     Govtrust::Action::"<name>"   in Govtrust::Action::"class:<class>"
//	                                        and Govtrust::Action::"service:<first segment>"
//	resource   Govtrust::Resource::"<type>/<id>"
//	                                        {type, id, org, owner, level: Long, attrs: Record}
//	context    a record of strings (requester, kind, via, ...)
//
// Resources are one entity type with a type attribute rather than one Cedar
// type per kind of object: services name their resource types freely
// ("account", "platform", "dual-request") without the constraints of Cedar
// identifiers, and a resource can never be mistaken for the principal or an
// action. Action entities are built once when an action is registered; per
// decision only the principal and the resource are built, and each action
// has a pre-computed list of the policies whose action scope can match it.
//
// # Policies
//
// The platform's policies are versioned files compiled into the binary
// (policies/platform-v1.cedar); a site adds *.cedar files from its data
// directory (New, Reload). Every statement carries an @id annotation,
// "platform.…" or "site.…", which decisions report. Cedar denies unless a
// permit matches, and a matching forbid always wins: a site can narrow what
// the platform allows with a forbid, and widen it with a permit, but a site
// permit never overrides a platform forbid — the clearance rule, the
// auditor's read-only rule, the audit log reserved to the auditor,
// maker–checker on approvals, and the separation of roles hold whatever a
// site writes. A forbid that Cedar cannot evaluate denies.
//
// # Classification
//
// Resources carry a Level (公开 public, 内部 internal, 秘密 secret, 机密
// confidential) and principals a clearance; policy platform.clearance
// forbids acting on anything above the principal's clearance.
package policy
