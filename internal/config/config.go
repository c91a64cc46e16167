package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Modes.
const (
	ModeDev        = "dev"
	ModeProduction = "production"
)

// Config is the whole configuration of a node.
type Config struct {
	// Mode is "dev" or "production". Production refuses unsafe settings.
	Mode      string          `yaml:"mode"`
	Node      NodeConfig      `yaml:"node"`
	Listen    ListenConfig    `yaml:"listen"`
	Database  DatabaseConfig  `yaml:"database"`
	HTTP      HTTPConfig      `yaml:"http"`
	Log       LogConfig       `yaml:"log"`
	HSM       HSMConfig       `yaml:"hsm"`
	Audit     AuditConfig     `yaml:"audit"`
	CA        CAConfig        `yaml:"ca"`
	TSA       TSAConfig       `yaml:"tsa"`
	KMS       KMSConfig       `yaml:"kms"`
	KMC       KMCConfig       `yaml:"kmc"`
	Directory DirectoryConfig `yaml:"directory"`
	Signature SignatureConfig `yaml:"signature"`
	Seal      SealConfig      `yaml:"seal"`
}

// CAConfig configures the certificate authority.
type CAConfig struct {
	// PublicURL is the base of the HTTP URLs written into certificates
	// (CRL distribution points, AIA CA issuers and OCSP): where relying
	// parties reach this CA's /pki and /ocsp, e.g. http://pki.example.gov.cn.
	// Empty: http://<listen.http> (development; required in production).
	PublicURL string `yaml:"public_url"`
	// PublicLDAPURL is the base of the LDAP CRL distribution points, e.g.
	// ldap://ldap.example.gov.cn. Empty: ldap://<listen.ldap> (development;
	// required in production).
	PublicLDAPURL string `yaml:"public_ldap_url"`
}

// Validate checks the CA section: each URL, when set, is absolute, of its
// scheme, with a host and a port other than 0, without user, query or
// fragment. A trailing "/" is dropped.
func (c *CAConfig) Validate() error {
	var errs []error
	for _, f := range []struct {
		key     string
		v       *string
		schemes []string
	}{{"ca.public_url", &c.PublicURL, []string{"http", "https"}}, {"ca.public_ldap_url", &c.PublicLDAPURL, []string{"ldap", "ldaps"}}} {
		if *f.v == "" {
			continue
		}
		*f.v = strings.TrimSuffix(*f.v, "/")
		u, err := url.Parse(*f.v)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %q is not a URL", f.key, *f.v))
		case !slices.Contains(f.schemes, u.Scheme) || u.Host == "" || u.Hostname() == "":
			errs = append(errs, fmt.Errorf("%s: %q must be %s://host[:port][/path]", f.key, *f.v, strings.Join(f.schemes, " or ")))
		case u.Port() == "0":
			errs = append(errs, fmt.Errorf("%s: %q has port 0", f.key, *f.v))
		case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
			errs = append(errs, fmt.Errorf("%s: %q must not carry a user, query or fragment", f.key, *f.v))
		}
	}
	return errors.Join(errs...)
}

// productionURL checks what production mode adds: the URL is set, and its
// host is not a loopback or unspecified address (certificates carry it to
// relying parties elsewhere).
func productionURL(key, v string) error {
	if v == "" {
		return fmt.Errorf("%s: required in production mode (certificates would name the listener address)", key)
	}
	u, err := url.Parse(v)
	if err != nil {
		return nil // Validate reported it
	}
	h := u.Hostname()
	if h == "localhost" {
		return fmt.Errorf("%s: %q names localhost", key, v)
	}
	if ip := net.ParseIP(h); ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		return fmt.Errorf("%s: %q names a loopback or unspecified address", key, v)
	}
	return nil
}

// TSAConfig configures the time-stamping authority (RFC 3161).
type TSAConfig struct {
	// Policies are the TSA policy OIDs accepted in requests; the first is
	// put in tokens whose request names none.
	Policies []string `yaml:"policies"`
	// Accuracy is stated in every token; when the clock's offset from the
	// time reference, widened by its error bound (half the round trip, the
	// server's root distance) and genTime's 1ms resolution, exceeds it, the
	// TSA answers timeNotAvailable instead of issuing tokens.
	Accuracy time.Duration `yaml:"accuracy"`
	// NTPServers are the time reference (host:port, port 123 by default).
	// Empty: the system clock is trusted as it is, in dev mode only.
	NTPServers []string `yaml:"ntp_servers"`
	// NTPInterval is how often the servers are asked.
	NTPInterval time.Duration `yaml:"ntp_interval"`
	// MaxBodyBytes bounds a TimeStampReq; larger bodies get 413 unread.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// Validate checks the TSA section.
func (t *TSAConfig) Validate() error {
	var errs []error
	if len(t.Policies) == 0 {
		errs = append(errs, errors.New("tsa.policies: at least one policy OID is required"))
	}
	for _, p := range t.Policies {
		if !validOID(p) {
			errs = append(errs, fmt.Errorf("tsa.policies: %q is not an object identifier DER can encode (dotted arcs, the first 0, 1 or 2, the second below 40 under 0 or 1)", p))
		}
	}
	// genTime has millisecond resolution: a token's time is up to 1ms
	// before the clock's, and that counts against the accuracy with the
	// clock's own error, so 1ms itself could never be met.
	if t.Accuracy <= time.Millisecond || t.Accuracy > time.Hour {
		errs = append(errs, fmt.Errorf("tsa.accuracy: %s must be above 1ms (genTime's resolution, which counts against it) and at most 1h", t.Accuracy))
	}
	for _, s := range t.NTPServers {
		if s == "" || strings.ContainsAny(s, " /") {
			errs = append(errs, fmt.Errorf("tsa.ntp_servers: %q is not host or host:port", s))
		}
	}
	if t.NTPInterval < time.Second {
		errs = append(errs, errors.New("tsa.ntp_interval: must be at least 1s"))
	}
	if t.MaxBodyBytes < 256 || t.MaxBodyBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("tsa.max_body_bytes: %d must be between 256 and 1048576", t.MaxBodyBytes))
	}
	return errors.Join(errs...)
}

// validOID reports whether s is a dotted OID whose arcs fit an int (the
// ASN.1 decoders' limit) and that DER can encode: the first arc is 0, 1
// or 2 (X.660), and under 0 or 1 the second is below 40, as the first two
// arcs share one subidentifier, 40 * first + second (X.690 §8.19.4).
func validOID(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return false
	}
	for i, p := range parts {
		if p == "" || len(p) > 9 || strings.Trim(p, "0123456789") != "" || (len(p) > 1 && p[0] == '0') {
			return false
		}
		if i == 0 && p != "0" && p != "1" && p != "2" {
			return false
		}
		if i == 1 && parts[0] != "2" && (len(p) > 2 || len(p) == 2 && p >= "40") {
			return false
		}
	}
	return true
}

// AuditConfig configures the audit log's signed checkpoints.
type AuditConfig struct {
	// CheckpointKey is the key URI that signs checkpoints (created on first
	// use: SM2, service audit).
	CheckpointKey string `yaml:"checkpoint_key"`
	// CheckpointInterval is how often the chain head is signed (and once
	// more at shutdown).
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
}

// Validate checks the audit section.
func (a *AuditConfig) Validate() error {
	if a.CheckpointKey == "" || !strings.Contains(a.CheckpointKey, ":") {
		return fmt.Errorf("audit.checkpoint_key: %q is not a key URI", a.CheckpointKey)
	}
	if a.CheckpointInterval < time.Second {
		return errors.New("audit.checkpoint_interval: must be at least 1s")
	}
	return nil
}

// HSMConfig says where keys live: the software keystore (always present) and
// PKCS#11 tokens.
type HSMConfig struct {
	Soft   SoftKeystoreConfig `yaml:"soft"`
	PKCS11 []PKCS11Config     `yaml:"pkcs11"`
}

// Ways to unlock the software keystore's master key.
const (
	UnlockDev        = "dev"
	UnlockPassphrase = "passphrase"
	UnlockShares     = "shares"
)

// SoftKeystoreConfig says how the software keystore's master key is unlocked
// at start.
type SoftKeystoreConfig struct {
	Unlock     string      `yaml:"unlock"`
	Passphrase SecretRef   `yaml:"passphrase"`
	Shares     []SecretRef `yaml:"shares"`
}

// PKCS11Config is one PKCS#11 token. Its keys are named
// pkcs11:token=<Token>;object=<label>.
type PKCS11Config struct {
	Token       string    `yaml:"token"`
	Module      string    `yaml:"module"`
	PIN         SecretRef `yaml:"pin"`
	Vendor      string    `yaml:"vendor"`
	MaxSessions int       `yaml:"max_sessions"`
	// CallTimeout bounds an operation on the token (pkcs11.Config.CallTimeout);
	// default 30s.
	CallTimeout time.Duration `yaml:"call_timeout"`
}

// NodeConfig identifies this node.
type NodeConfig struct {
	// Name is recorded in every audit record this node writes; default: host name.
	Name string `yaml:"name"`
	// GCPercent is the garbage collector's target heap growth (Go's GOGC)
	// for `govtrust up`; the GOGC environment variable, when set, wins.
	// Default 400: the node's live heap is small, and collecting less often
	// leaves more CPU for signing.
	GCPercent int `yaml:"gc_percent"`
}

// ListenConfig holds the listener addresses. Port 0 picks a free port.
type ListenConfig struct {
	HTTP  string `yaml:"http"`
	HTTPS string `yaml:"https"`
	LDAP  string `yaml:"ldap"`
}

// DatabaseConfig selects and tunes the SQL store.
type DatabaseConfig struct {
	// URL is "" for the embedded SQLite file DIR/govtrust.db, a SQLite file
	// path, or postgres://user@host/db. Passwords never go in the URL.
	URL string `yaml:"url"`
	// Password is a secret reference for PostgreSQL.
	Password SecretRef `yaml:"password"`
	// SQLiteSynchronous is PRAGMA synchronous: FULL or EXTRA in production.
	SQLiteSynchronous string        `yaml:"sqlite_synchronous"`
	BusyTimeout       time.Duration `yaml:"busy_timeout"`
	Readers           int           `yaml:"readers"`
	MaxConns          int           `yaml:"max_conns"`
}

// HTTPConfig holds HTTP server limits.
type HTTPConfig struct {
	MaxBodyBytes      int64         `yaml:"max_body_bytes"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`
}

// LogConfig sets up logging.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or text
	// PublicOKPerSecond caps the access-log lines of successful, fast
	// requests on the plain-HTTP listener (CA certificates, CRLs, OCSP,
	// TSA: anonymous, high-volume) per second; errors and requests of a
	// second or more are always logged, every request is counted in the
	// metrics, and each TSA token is recorded in the database anyway.
	// 0 logs every request.
	PublicOKPerSecond int `yaml:"public_ok_per_second"`
}

// Defaults returns the built-in configuration.
func Defaults() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "govtrust"
	}
	return Config{
		Mode: ModeDev,
		Node: NodeConfig{Name: host, GCPercent: 400},
		Listen: ListenConfig{
			HTTP:  "127.0.0.1:8080",
			HTTPS: "127.0.0.1:8443",
			LDAP:  "127.0.0.1:3389",
		},
		Database: DatabaseConfig{
			SQLiteSynchronous: "FULL",
			BusyTimeout:       5 * time.Second,
			Readers:           4,
			MaxConns:          16,
		},
		HTTP: HTTPConfig{
			MaxBodyBytes:      1 << 20,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       120 * time.Second,
			ShutdownTimeout:   4 * time.Second,
		},
		Log: LogConfig{Level: "info", Format: "json", PublicOKPerSecond: 10},
		HSM: HSMConfig{
			Soft:   SoftKeystoreConfig{Unlock: UnlockDev, Shares: []SecretRef{}},
			PKCS11: []PKCS11Config{},
		},
		Audit: AuditConfig{CheckpointKey: "soft:audit/checkpoint", CheckpointInterval: 5 * time.Minute},
		TSA: TSAConfig{Policies: []string{"2.999.3161.1"}, Accuracy: time.Second, NTPServers: []string{},
			NTPInterval: 64 * time.Second, MaxBodyBytes: 16384},
		KMS:       KMSConfig{KEK: "soft:kms/kek", RotationCheck: time.Minute, DestroyApprovals: 1},
		Signature: SignatureConfig{Anchors: []string{}, FetchTimeout: 10 * time.Second},
		KMC: KMCConfig{EscrowKey: "soft:kmc/escrow", RecoveryApprovals: 2, RecoveryTTL: 72 * time.Hour,
			Retention: 5 * 365 * 24 * time.Hour},
		Directory: DirectoryConfig{BaseDN: "dc=govtrust,dc=local", SizeLimit: 1000, TimeLimit: 10 * time.Second,
			MaxRequestBytes: 65536, MaxConnections: 1000, MaxOperations: 16, WriteTimeout: 30 * time.Second,
			IdleTimeout: 5 * time.Minute, PublishInterval: time.Second, PublicAttributes: DefaultPublicAttributes(),
			External: []ExternalLDAPConfig{}},
		Seal: SealConfig{MakerKey: "soft:seal/maker", MakerCA: "sm2-issuing", Approvals: 1, ApplicationTTL: 72 * time.Hour,
			MaxDocumentBytes: 64 << 20, MakerAnchors: []string{}},
	}
}

// Validate checks every section.
func (c *Config) Validate() error {
	var errs []error
	if c.Mode != ModeDev && c.Mode != ModeProduction {
		errs = append(errs, fmt.Errorf("mode: %q is not dev or production", c.Mode))
	}
	for _, v := range []interface {
		Validate() error
	}{&c.Node, &c.Listen, &c.Database, &c.HTTP, &c.Log, &c.HSM, &c.Audit, &c.CA, &c.TSA, &c.KMS, &c.KMC, &c.Directory, &c.Signature, &c.Seal} {
		if err := v.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Mode == ModeProduction {
		if err := productionURL("ca.public_url", c.CA.PublicURL); err != nil {
			errs = append(errs, err)
		}
		if err := productionURL("ca.public_ldap_url", c.CA.PublicLDAPURL); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Mode == ModeProduction && c.HSM.Soft.Unlock == UnlockDev {
		errs = append(errs, errors.New("hsm.soft.unlock: dev (a master key stored in clear) is refused in production mode; use passphrase or shares"))
	}
	return errors.Join(errs...)
}

// Validate checks the node section.
func (n *NodeConfig) Validate() error {
	if n.Name == "" || len(n.Name) > 64 || strings.ContainsAny(n.Name, " \t\r\n") {
		return fmt.Errorf("node.name: %q must be 1-64 characters without white space", n.Name)
	}
	if n.GCPercent < 50 || n.GCPercent > 10000 {
		return fmt.Errorf("node.gc_percent: %d is not within 50-10000", n.GCPercent)
	}
	return nil
}

// Validate checks the listener addresses.
func (l *ListenConfig) Validate() error {
	var errs []error
	for key, addr := range map[string]string{"listen.http": l.HTTP, "listen.https": l.HTTPS, "listen.ldap": l.LDAP} {
		if addr == "" {
			continue // an empty address disables the listener
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q: %v", key, addr, err))
		}
	}
	return errors.Join(errs...)
}

// Validate checks the database section.
func (d *DatabaseConfig) Validate() error {
	var errs []error
	switch strings.ToUpper(d.SQLiteSynchronous) {
	case "OFF", "NORMAL", "FULL", "EXTRA":
	default:
		errs = append(errs, fmt.Errorf("database.sqlite_synchronous: %q is not OFF, NORMAL, FULL or EXTRA", d.SQLiteSynchronous))
	}
	if strings.HasPrefix(d.URL, "postgres://") || strings.HasPrefix(d.URL, "postgresql://") {
		u, err := url.Parse(d.URL)
		switch {
		case err != nil:
			// url.Parse echoes the input; never repeat a URL that may hold a password.
			errs = append(errs, errors.New("database.url: not a valid URL"))
		case u.User != nil:
			if _, has := u.User.Password(); has {
				errs = append(errs, errors.New("database.url: contains a password; use database.password: env:NAME or file:PATH"))
			}
		}
	}
	if err := d.Password.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("database.password: %w", err))
	}
	if d.BusyTimeout < 0 || d.Readers < 1 || d.MaxConns < 1 {
		errs = append(errs, errors.New("database: busy_timeout must be >= 0, readers and max_conns >= 1"))
	}
	return errors.Join(errs...)
}

// Validate checks the HTTP limits.
func (h *HTTPConfig) Validate() error {
	var errs []error
	if h.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("http.max_body_bytes: %d is below 1024", h.MaxBodyBytes))
	}
	for key, d := range map[string]time.Duration{
		"http.read_header_timeout": h.ReadHeaderTimeout, "http.read_timeout": h.ReadTimeout,
		"http.write_timeout": h.WriteTimeout, "http.idle_timeout": h.IdleTimeout,
		"http.shutdown_timeout": h.ShutdownTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", key))
		}
	}
	return errors.Join(errs...)
}

// Validate checks the key-storage section.
func (h *HSMConfig) Validate() error {
	var errs []error
	s := h.Soft
	switch s.Unlock {
	case UnlockDev:
	case UnlockPassphrase:
		if s.Passphrase == "" {
			errs = append(errs, errors.New("hsm.soft.passphrase: required when unlock is passphrase"))
		}
	case UnlockShares:
		if len(s.Shares) < 2 {
			errs = append(errs, errors.New("hsm.soft.shares: at least two share references are required when unlock is shares"))
		}
	default:
		errs = append(errs, fmt.Errorf("hsm.soft.unlock: %q is not dev, passphrase or shares", s.Unlock))
	}
	if err := s.Passphrase.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("hsm.soft.passphrase: %w", err))
	}
	for i, r := range s.Shares {
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("hsm.soft.shares[%d]: %w", i, err))
		}
	}
	seen := map[string]bool{}
	for i, p := range h.PKCS11 {
		key := fmt.Sprintf("hsm.pkcs11[%d]", i)
		switch {
		case p.Token == "" || len(p.Token) > 32:
			errs = append(errs, fmt.Errorf("%s.token: a token label of 1-32 bytes is required", key))
		case seen[p.Token]:
			errs = append(errs, fmt.Errorf("%s.token: %q listed twice", key, p.Token))
		}
		seen[p.Token] = true
		if p.Module == "" {
			errs = append(errs, fmt.Errorf("%s.module: the PKCS#11 module path is required", key))
		}
		if p.PIN == "" {
			errs = append(errs, fmt.Errorf("%s.pin: a PIN reference (env:NAME or file:PATH) is required", key))
		} else if err := p.PIN.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s.pin: %w", key, err))
		}
		if p.MaxSessions < 0 {
			errs = append(errs, fmt.Errorf("%s.max_sessions: must not be negative", key))
		}
		if p.CallTimeout < 0 {
			errs = append(errs, fmt.Errorf("%s.call_timeout: must not be negative", key))
		}
	}
	return errors.Join(errs...)
}

// Validate checks the log section.
func (l *LogConfig) Validate() error {
	var errs []error
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not debug, info, warn or error", l.Level))
	}
	if l.Format != "json" && l.Format != "text" {
		errs = append(errs, fmt.Errorf("log.format: %q is not json or text", l.Format))
	}
	if l.PublicOKPerSecond < 0 {
		errs = append(errs, fmt.Errorf("log.public_ok_per_second: %d is negative", l.PublicOKPerSecond))
	}
	return errors.Join(errs...)
}

// Load returns the defaults overlaid with the YAML file at path (when path is
// not empty) and then with GOVTRUST_* variables from environ (os.Environ()
// form). It does not validate: callers apply flags first, then Validate.
func Load(path string, environ []string) (*Config, error) {
	c := Defaults()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		if err := decodeStrict(b, &c); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(&c, environ); err != nil {
		return nil, err
	}
	return &c, nil
}

// decodeStrict decodes one YAML document, refusing unknown keys (yaml.v3 names
// the line) and a second document.
func decodeStrict(b []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file leaves the defaults
		}
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return nil
}
