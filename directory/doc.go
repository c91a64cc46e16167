// Package directory is govtrust's LDAP directory (issue #6): an embedded
// LDAPv3 server (github.com/jimlambrt/gldap) of certificates, CRLs and the
// organisation, and the publisher that keeps it, and external LDAP servers
// (github.com/go-ldap/ldap/v3), in step with the certificate authority.
//
// The tree under the base DN (CONTRACT.md, "Directory"):
//
//	cn=<ca>,ou=ca,<base>             pkiCA + certificationAuthority: cACertificate,
//	                                 certificateRevocationList, authorityRevocationList,
//	                                 deltaRevocationList (RFC 4523), the bytes HTTP serves,
//	                                 crossCertificatePair (forward: issued to the CA)
//	uid=<serial>,cn=<ca>,ou=ca,<base> one entry per current certificate (userCertificate)
//	ou=<code>,ou=departments,<base>  departments; their people (inetOrgPerson + pkiUser)
//	                                 and applications (applicationProcess, and
//	                                 extensibleObject for their mail) below them
//	cn=<name>,ou=services,<base>     registered service endpoints
//
// Entries live in dir_entries and, for searches, in an in-memory copy that
// every write updates after its commit and that is reloaded when another
// process changed dir_meta.version. Every directory write takes the
// dir_meta row lock first, so writers in all processes run one at a time and
// the change log dir_changes is in commit order.
//
// The publisher consumes the CA's transactional outbox through Source: in
// one transaction it applies the events to the entries and marks them
// published, so an event is applied exactly once whatever crashes happen,
// and two processes cannot both take it. External servers follow
// dir_changes with a cursor and a lease per server (dir_targets); each push
// writes an entry's whole current state, so a push repeated after a crash
// is harmless, and an outage only delays them (back-off up to a minute).
// An entry a server refuses for what it is (schema, constraint, naming) is
// recorded in dir_refused and skipped, and tried again later.
//
// Anonymous clients read and filter on the public attributes only
// (directory.public_attributes); a bind with a name and no password is
// refused (RFC 4513 §5.1.2); administrators bind as
// cn=<account>,ou=accounts,<base> with an API token as the password and may
// write outside ou=ca. Every write is audited in its own transaction.
package directory
