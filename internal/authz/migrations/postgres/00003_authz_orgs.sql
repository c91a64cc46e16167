-- +goose Up
-- The organisation registry: for each organisation id that accounts carry
-- (authz_accounts.org), the legal name its certificates carry as subject O
-- and its registered codes (GM/T 0015 identity values: uscc 统一社会信用代码,
-- org_code 组织机构代码, tax 纳税人识别号; '' = none registered). The CA binds
-- what registration officers and application accounts of the organisation
-- request to these values (ca/orgbinding.go). mac covers the row as in
-- authz_accounts, so a row edited in the database is refused.
CREATE TABLE authz_orgs (
    id         TEXT PRIMARY KEY,
    legal_name TEXT NOT NULL,
    uscc       TEXT NOT NULL DEFAULT '',
    org_code   TEXT NOT NULL DEFAULT '',
    tax        TEXT NOT NULL DEFAULT '',
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    mac        TEXT NOT NULL
);

-- +goose Down
DROP TABLE authz_orgs;
