package policy

import (
	"errors"
	"fmt"
	"slices"
)

// Role is a role an account holds. Roles are granted by the security
// administrator; what each role may do is written in the platform policies.
type Role string

// Roles of the platform.
const (
	RoleSysAdmin           Role = "sysadmin"             // 系统管理员: runs the platform and its nodes
	RoleSecAdmin           Role = "secadmin"             // 安全管理员: accounts, roles, tokens, policies, HSM keys
	RoleAuditor            Role = "auditor"              // 审计管理员: reads the audit log, changes nothing
	RoleCAOperator         Role = "ca-operator"          // CA 操作员: runs the CAs
	RoleRA                 Role = "ra"                   // 注册审核员: issues and revokes for their organisation
	RoleKeyRecovery        Role = "key-recovery-officer" // 密钥恢复员: approves and carries out key recovery
	RoleSealAdmin          Role = "seal-admin"           // 印章管理员: seal applications and making
	RoleOfficial           Role = "official"             // 部门工作人员: uses the organisation's seals
	RoleApplication        Role = "application"          // 部门应用: a department's application (machine)
	RoleCitizen            Role = "citizen"              // 公民
	RoleEnterpriseOperator Role = "enterprise-operator"  // 企业经办人: acts for a legal person
)

// Roles lists every role, the three separated administrators first.
var Roles = []Role{
	RoleSysAdmin, RoleSecAdmin, RoleAuditor, RoleCAOperator, RoleRA, RoleKeyRecovery,
	RoleSealAdmin, RoleOfficial, RoleApplication, RoleCitizen, RoleEnterpriseOperator,
}

var roleTitles = map[Role]string{
	RoleSysAdmin:           "系统管理员 system administrator",
	RoleSecAdmin:           "安全管理员 security administrator",
	RoleAuditor:            "审计管理员 audit administrator",
	RoleCAOperator:         "CA操作员 CA operator",
	RoleRA:                 "注册审核员 registration officer",
	RoleKeyRecovery:        "密钥恢复员 key recovery officer",
	RoleSealAdmin:          "印章管理员 seal administrator",
	RoleOfficial:           "部门工作人员 department official",
	RoleApplication:        "部门应用 department application",
	RoleCitizen:            "公民 citizen",
	RoleEnterpriseOperator: "企业经办人 enterprise operator",
}

// Valid reports whether r is a role of the platform.
func (r Role) Valid() bool {
	_, ok := roleTitles[r]
	return ok
}

// Title is the role's name for people, in Chinese and English.
func (r Role) Title() string {
	if t, ok := roleTitles[r]; ok {
		return t
	}
	return string(r)
}

// Errors of role assignment.
var (
	ErrRoleConflict = errors.New("roles must not be held together")
	ErrUnknownRole  = errors.New("unknown role")
)

// RoleConflictError names the rule a set of roles breaks. It wraps
// ErrRoleConflict; the caller audits the refused attempt with Rule and Roles
// (ACCEPTANCE.md K-03).
type RoleConflictError struct {
	Rule   string  // the rule's id, which is also the id of its platform forbid
	Roles  [2]Role // the first pair found that breaks it
	Source string  // where the rule comes from
}

func (e *RoleConflictError) Error() string {
	return fmt.Sprintf("%s and %s: %v (%s: %s)", e.Roles[0], e.Roles[1], ErrRoleConflict, e.Rule, e.Source)
}

// Unwrap returns ErrRoleConflict.
func (e *RoleConflictError) Unwrap() error { return ErrRoleConflict }

// sodRule says that no account holds a role of A together with a (different)
// role of B. Each rule has a forbid of the same id in policies/platform-v1.cedar
// so that an account holding a forbidden pair anyway is denied everything; a
// test keeps the two in step.
type sodRule struct {
	id     string
	a, b   []Role
	source string
}

// others returns every role except r.
func others(r Role) []Role {
	return slices.DeleteFunc(slices.Clone(Roles), func(x Role) bool { return x == r })
}

var staff = []Role{RoleSysAdmin, RoleSecAdmin, RoleAuditor, RoleCAOperator, RoleRA, RoleKeyRecovery,
	RoleSealAdmin, RoleOfficial, RoleApplication}

var sodRules = []sodRule{
	{
		// Every role but the auditor's changes state, so "auditor with any
		// role that can change state" is "auditor with any other role".
		id: "platform.sod.auditor", a: []Role{RoleAuditor}, b: others(RoleAuditor),
		source: "NIAP CA PP v2.1 FMT_SMR.2: no identity assumes both the auditor role and any other; " +
			"CIMC PP FMT_SMR.2.3; 三员分立",
	},
	{
		id: "platform.sod.admins", a: []Role{RoleSysAdmin}, b: []Role{RoleSecAdmin},
		source: "三员分立: system, security and audit administrators are different people " +
			"(GB/T 22239-2019 level 3 separation of administrative privileges)",
	},
	{
		id: "platform.sod.officer-admin", a: []Role{RoleSysAdmin, RoleSecAdmin},
		b:      []Role{RoleCAOperator, RoleRA, RoleKeyRecovery},
		source: "CIMC PP FMT_SMR.2.3 and FBCA CP §5.2.4: no identity is both an administrator and an officer",
	},
	{
		id: "platform.sod.ca-ra", a: []Role{RoleCAOperator}, b: []Role{RoleRA},
		source: "NIAP CA PP v2.1 FMT_SMR.2 (CA operations staff); ACCEPTANCE.md K-03",
	},
	{
		id: "platform.sod.key-recovery", a: []Role{RoleKeyRecovery}, b: []Role{RoleRA, RoleCAOperator},
		source: "maker–checker on key recovery (the RA requests it, ACCEPTANCE.md K-01); " +
			"GM/T 0034-2014 keeps the key management centre apart from the CA",
	},
	{
		id: "platform.sod.application", a: []Role{RoleApplication}, b: others(RoleApplication),
		source: "an application credential is a machine's; a person's role on it defeats " +
			"accountability in the audit log (NIAP CA PP FAU_GEN)",
	},
	{
		id: "platform.sod.public", a: []Role{RoleCitizen, RoleEnterpriseOperator}, b: staff,
		source: "public-portal accounts hold no staff role (ARCHITECTURE.md §1, public and internal portals)",
	},
}

// CheckRoles reports whether one account may hold all of roles. It returns an
// error wrapping ErrUnknownRole for a role that does not exist, and a
// *RoleConflictError (wrapping ErrRoleConflict) naming the first rule broken.
// Duplicates are allowed. The rules:
//
//   - platform.sod.auditor: the auditor holds no other role.
//   - platform.sod.admins: sysadmin and secadmin are different people (with
//     the first rule, the three administrators are mutually exclusive).
//   - platform.sod.officer-admin: sysadmin and secadmin are not ca-operator,
//     ra or key-recovery-officer.
//   - platform.sod.ca-ra: ca-operator and ra are different people.
//   - platform.sod.key-recovery: key-recovery-officer is neither ra nor
//     ca-operator.
//   - platform.sod.application: an application holds no other role.
//   - platform.sod.public: citizen and enterprise-operator hold no staff role
//     (they may hold each other).
func CheckRoles(roles []Role) error {
	for _, r := range roles {
		if !r.Valid() {
			return fmt.Errorf("%w: %q", ErrUnknownRole, string(r))
		}
	}
	for _, rule := range sodRules {
		for _, a := range rule.a {
			if !slices.Contains(roles, a) {
				continue
			}
			for _, b := range rule.b {
				if b != a && slices.Contains(roles, b) {
					return &RoleConflictError{Rule: rule.id, Roles: [2]Role{a, b}, Source: rule.source}
				}
			}
		}
	}
	return nil
}
