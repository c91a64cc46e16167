package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// DirectoryConfig configures the LDAP directory (issue #6): the embedded
// server on listen.ldap and the publisher that feeds it, and external LDAP
// servers, from the CA's outbox.
type DirectoryConfig struct {
	// BaseDN is the suffix of every entry (CONTRACT.md: CA entries are
	// cn=<ca>,ou=ca,<base_dn>). The profiles' LDAP CRL distribution points
	// name it, so it is limited to characters that need no escaping in an
	// LDAP URL (RFC 4516 §2.1).
	BaseDN string `yaml:"base_dn"`
	// LDAPS is a second listener speaking LDAP over TLS from the first byte
	// (port 636 style), with the HTTPS listener's certificate. Empty
	// disables it; StartTLS on listen.ldap is always offered.
	LDAPS string `yaml:"ldaps"`
	// SizeLimit caps the entries one search returns, whatever the client
	// asks (RFC 4511 §4.5.1.4: the server may impose a lower limit).
	SizeLimit int `yaml:"size_limit"`
	// TimeLimit caps the time one search may take.
	TimeLimit time.Duration `yaml:"time_limit"`
	// MaxRequestBytes caps one LDAP message (BER length); a longer one
	// closes the connection before it is read.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// MaxConnections caps the LDAP connections open at once (LDAP and
	// LDAPS together); a connection above it is answered busy and closed.
	MaxConnections int `yaml:"max_connections"`
	// MaxOperations caps the operations one connection has in progress;
	// a request above it is answered busy (51). A connection with four
	// times as many requests unanswered (it does not read its answers) is
	// closed.
	MaxOperations int `yaml:"max_operations"`
	// WriteTimeout is how long one response may wait for the client to
	// read; a client that does not read in time is disconnected.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes a connection that neither sends a request nor
	// receives an answer for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// PublishInterval is how often the publisher looks at the CA's outbox
	// and the external servers' queues when nothing woke it earlier.
	PublishInterval time.Duration `yaml:"publish_interval"`
	// PublicAttributes are the attributes anonymous clients may read and
	// filter on; everything else (telephone numbers, ID numbers, ...) is
	// for authenticated administrators only.
	PublicAttributes []string `yaml:"public_attributes"`
	// External are LDAP servers (OpenLDAP, 389-ds) kept in step with the
	// embedded directory.
	External []ExternalLDAPConfig `yaml:"external"`
}

// ExternalLDAPConfig is one external LDAP server the publisher writes to.
type ExternalLDAPConfig struct {
	// Name identifies the target in the publisher's queue; changing it
	// starts the target over from the beginning.
	Name string `yaml:"name"`
	// URL is ldap://host:port or ldaps://host:port.
	URL string `yaml:"url"`
	// StartTLS upgrades an ldap:// connection before binding.
	StartTLS bool `yaml:"start_tls"`
	// CACert is a PEM file of the roots trusted for the server's TLS
	// certificate (default the system roots).
	CACert string `yaml:"ca_cert"`
	// BindDN and Password authenticate the publisher (simple bind).
	BindDN   string    `yaml:"bind_dn"`
	Password SecretRef `yaml:"password"`
	// BaseDN replaces the directory's base DN in every DN written (empty:
	// the same base DN).
	BaseDN string `yaml:"base_dn"`
	// ObjectClasses replaces the object classes of entries by kind (ca,
	// department, person, application, service, certificate, container),
	// for servers whose schema differs.
	ObjectClasses map[string][]string `yaml:"object_classes"`
	// Attributes are the attributes written (default: the public ones).
	Attributes []string `yaml:"attributes"`
}

// DefaultPublicAttributes returns what anonymous clients see by default:
// names, organisation, certificates and CRLs; never telephone numbers,
// addresses, ID numbers or passwords.
func DefaultPublicAttributes() []string {
	return []string{
		"objectClass", "cn", "sn", "givenName", "displayName", "ou", "o", "c", "l", "st", "uid", "mail",
		"title", "description", "businessCategory", "departmentNumber", "labeledURI", "seeAlso",
		"userCertificate", "cACertificate", "certificateRevocationList", "authorityRevocationList",
		"deltaRevocationList", "crossCertificatePair",
	}
}

var (
	// baseDNRE: RDNs attr=value separated by commas, with URL-safe values.
	baseDNRE  = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]*=[a-zA-Z0-9.-]+(,[a-zA-Z][a-zA-Z0-9-]*=[a-zA-Z0-9.-]+)*$`)
	attrRE    = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]*$`)
	targetRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	entryKind = map[string]bool{"ca": true, "department": true, "person": true, "application": true, "service": true, "certificate": true, "container": true}
)

// ValidBaseDN reports whether dn is a base DN the directory accepts.
func ValidBaseDN(dn string) bool { return baseDNRE.MatchString(dn) }

// Validate checks the directory section.
func (d *DirectoryConfig) Validate() error {
	var errs []error
	if !ValidBaseDN(d.BaseDN) {
		errs = append(errs, fmt.Errorf("directory.base_dn: %q must be attr=value RDNs of letters, digits, '.' and '-' (it goes into LDAP URLs unescaped)", d.BaseDN))
	}
	if d.LDAPS != "" {
		if _, _, err := net.SplitHostPort(d.LDAPS); err != nil {
			errs = append(errs, fmt.Errorf("directory.ldaps: %q: %v", d.LDAPS, err))
		}
	}
	if d.SizeLimit < 1 || d.SizeLimit > 1000000 {
		errs = append(errs, fmt.Errorf("directory.size_limit: %d must be between 1 and 1000000", d.SizeLimit))
	}
	if d.TimeLimit < 100*time.Millisecond || d.TimeLimit > time.Hour {
		errs = append(errs, fmt.Errorf("directory.time_limit: %s must be between 100ms and 1h", d.TimeLimit))
	}
	if d.MaxRequestBytes < 1024 || d.MaxRequestBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("directory.max_request_bytes: %d must be between 1024 and 67108864", d.MaxRequestBytes))
	}
	if d.MaxConnections < 1 || d.MaxConnections > 1000000 {
		errs = append(errs, fmt.Errorf("directory.max_connections: %d must be between 1 and 1000000", d.MaxConnections))
	}
	if d.MaxOperations < 1 || d.MaxOperations > 1024 {
		errs = append(errs, fmt.Errorf("directory.max_operations: %d must be between 1 and 1024", d.MaxOperations))
	}
	if d.WriteTimeout < 100*time.Millisecond || d.WriteTimeout > time.Hour {
		errs = append(errs, fmt.Errorf("directory.write_timeout: %s must be between 100ms and 1h", d.WriteTimeout))
	}
	if d.IdleTimeout < time.Second || d.IdleTimeout > 24*time.Hour {
		errs = append(errs, fmt.Errorf("directory.idle_timeout: %s must be between 1s and 24h", d.IdleTimeout))
	}
	if d.PublishInterval < 10*time.Millisecond || d.PublishInterval > time.Hour {
		errs = append(errs, fmt.Errorf("directory.publish_interval: %s must be between 10ms and 1h", d.PublishInterval))
	}
	for _, a := range d.PublicAttributes {
		if !attrRE.MatchString(a) {
			errs = append(errs, fmt.Errorf("directory.public_attributes: %q is not an attribute name", a))
		}
	}
	seen := map[string]bool{}
	for i, e := range d.External {
		key := fmt.Sprintf("directory.external[%d]", i)
		if !targetRE.MatchString(e.Name) {
			errs = append(errs, fmt.Errorf("%s.name: %q must be 1-32 of [a-z0-9-]", key, e.Name))
		} else if seen[e.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q listed twice", key, e.Name))
		}
		seen[e.Name] = true
		u, err := url.Parse(e.URL)
		switch {
		case err != nil || u.Host == "":
			errs = append(errs, fmt.Errorf("%s.url: want ldap://host:port or ldaps://host:port", key))
		case u.Scheme != "ldap" && u.Scheme != "ldaps":
			errs = append(errs, fmt.Errorf("%s.url: scheme %q is not ldap or ldaps", key, u.Scheme))
		case u.Scheme == "ldaps" && e.StartTLS:
			errs = append(errs, fmt.Errorf("%s.start_tls: an ldaps URL is TLS already", key))
		}
		if e.BindDN != "" && e.Password == "" {
			errs = append(errs, fmt.Errorf("%s.password: a secret reference is required with bind_dn (an empty password is an unauthenticated bind, RFC 4513 §5.1.2)", key))
		}
		if err := e.Password.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s.password: %w", key, err))
		}
		if e.BaseDN != "" && !ValidBaseDN(e.BaseDN) {
			errs = append(errs, fmt.Errorf("%s.base_dn: %q is not a base DN", key, e.BaseDN))
		}
		for k, ocs := range e.ObjectClasses {
			if !entryKind[k] {
				errs = append(errs, fmt.Errorf("%s.object_classes: %q is not ca, department, person, application, service, certificate or container", key, k))
			}
			for _, oc := range ocs {
				if !attrRE.MatchString(oc) {
					errs = append(errs, fmt.Errorf("%s.object_classes.%s: %q is not an object class name", key, k, oc))
				}
			}
		}
		for _, a := range e.Attributes {
			if !attrRE.MatchString(a) {
				errs = append(errs, fmt.Errorf("%s.attributes: %q is not an attribute name", key, a))
			}
		}
	}
	if strings.TrimSpace(d.BaseDN) != d.BaseDN {
		errs = append(errs, errors.New("directory.base_dn: no surrounding spaces"))
	}
	return errors.Join(errs...)
}
