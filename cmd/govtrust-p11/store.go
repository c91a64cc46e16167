package main

import (
	"bufio"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/emmansun/gmsm/sm4"
	"golang.org/x/crypto/argon2"
)

// Environment variables that select the token directory.
const (
	envDir  = "GOVTRUST_P11_DIR"
	envConf = "GOVTRUST_P11_CONF"
)

// loadDir returns the token directory named by the environment: either
// GOVTRUST_P11_DIR directly, or the "directory" key of the file named by
// GOVTRUST_P11_CONF. Setting both is an error, so a stale variable cannot
// silently pick the wrong token.
func loadDir(getenv func(string) string) (string, error) {
	dir, conf := getenv(envDir), getenv(envConf)
	switch {
	case dir != "" && conf != "":
		return "", fmt.Errorf("both %s and %s are set; set only one", envDir, envConf)
	case dir != "":
		return filepath.Abs(dir)
	case conf != "":
		return parseConfig(conf)
	}
	return "", fmt.Errorf("neither %s nor %s is set", envDir, envConf)
}

// parseConfig reads a config file of "key = value" lines; '#' starts a
// comment. The only key is "directory"; unknown keys are errors. A relative
// directory is taken relative to the config file.
func parseConfig(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	var dir string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return "", fmt.Errorf("config %s:%d: expected key = value", path, n)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "directory":
			dir = v
		default:
			return "", fmt.Errorf("config %s:%d: unknown key %q", path, n, k)
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read config: %w", err)
	}
	if dir == "" {
		return "", fmt.Errorf("config %s: no directory", path)
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(filepath.Dir(path), dir)
	}
	return filepath.Abs(dir)
}

// kdfParams are the argon2id parameters (RFC 9106) that turn a PIN into a
// key-encryption key. They are stored in the token file so they can be
// raised for new tokens without breaking old ones. The defaults are OWASP's
// minimum for argon2id (19 MiB, 2 passes, 1 lane): this token protects only
// against casual reading of its directory, and a login must stay cheap.
type kdfParams struct {
	Alg       string `json:"alg"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

var defaultKDF = kdfParams{Alg: "argon2id", Time: 2, MemoryKiB: 19 * 1024, Threads: 1}

// pinRecord protects the token key under one PIN. The wrapped key is the
// PIN check: it opens (SM4-GCM authenticates) only under the right PIN.
type pinRecord struct {
	Salt       []byte `json:"salt"`
	WrappedKey []byte `json:"wrapped_key"`
	Failures   int    `json:"failures"`
}

// tokenFile is token.json.
type tokenFile struct {
	Format  string     `json:"format"`
	Label   string     `json:"label"`
	Serial  string     `json:"serial"`
	Created time.Time  `json:"created"`
	KDF     kdfParams  `json:"kdf"`
	SO      pinRecord  `json:"so"`
	User    *pinRecord `json:"user,omitempty"`
}

const (
	tokenFormat = "govtrust-p11-token/1"
	// maxPINFailures consecutive wrong PINs lock that PIN, as on a USB key.
	// A locked user PIN is reset by the SO with C_InitPIN; a locked SO PIN
	// leaves only wiping the directory (govtrust-p11 --init --force).
	maxPINFailures = 10
	minPINLen      = 4
	maxPINLen      = 255
	tokenKeyLen    = 16 // SM4
)

// fileStamp identifies a version of a file, to notice changes made by other
// processes sharing the directory.
type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func stampOf(fi fs.FileInfo) fileStamp {
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = s.Ino
	}
	return st
}

// store is the token directory:
//
//	DIR/token.json        label, serial, KDF parameters, wrapped token key
//	DIR/objects/ID.json   one file per token object
//	DIR/.lock             flock(2) target serialising token.json updates
type store struct {
	dir string
}

func (s *store) tokenPath() string  { return filepath.Join(s.dir, "token.json") }
func (s *store) objectsDir() string { return filepath.Join(s.dir, "objects") }
func (s *store) objectPath(id string) string {
	return filepath.Join(s.objectsDir(), id+".json")
}

// readToken reads token.json; (nil, zero, nil) means not initialized.
func (s *store) readToken() (*tokenFile, fileStamp, error) {
	f, err := os.Open(s.tokenPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fileStamp{}, nil
	}
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("open token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("stat token file: %w", err)
	}
	var tf tokenFile
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tf); err != nil {
		return nil, fileStamp{}, fmt.Errorf("decode token file: %w", err)
	}
	if tf.Format != tokenFormat {
		return nil, fileStamp{}, fmt.Errorf("token file: unknown format %q", tf.Format)
	}
	if tf.KDF.Alg != "argon2id" {
		return nil, fileStamp{}, fmt.Errorf("token file: unknown KDF %q", tf.KDF.Alg)
	}
	return &tf, stampOf(fi), nil
}

// writeToken replaces token.json and returns the stamp of the new file.
func (s *store) writeToken(tf *tokenFile) (fileStamp, error) {
	b, err := json.MarshalIndent(tf, "", "  ")
	if err != nil {
		return fileStamp{}, fmt.Errorf("encode token file: %w", err)
	}
	if err := writeFileAtomic(s.tokenPath(), b); err != nil {
		return fileStamp{}, err
	}
	return s.statToken()
}

// statToken returns the stamp of token.json (zero when it does not exist).
func (s *store) statToken() (fileStamp, error) {
	fi, err := os.Stat(s.tokenPath())
	if errors.Is(err, fs.ErrNotExist) {
		return fileStamp{}, nil
	}
	if err != nil {
		return fileStamp{}, fmt.Errorf("stat token file: %w", err)
	}
	return stampOf(fi), nil
}

// lock takes an exclusive flock on DIR/.lock for a read-modify-write of
// token.json or a wipe, so two processes sharing the token cannot lose each
// other's PIN-failure counts or race an initialisation.
func (s *store) lock() (func(), error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create token directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(s.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock token directory: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// objectEntry is one object file found in the directory.
type objectEntry struct {
	id    string
	stamp fileStamp
}

func (s *store) listObjects() ([]objectEntry, error) {
	ents, err := os.ReadDir(s.objectsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list objects: %w", err)
	}
	var out []objectEntry
	for _, e := range ents {
		name := e.Name()
		id, ok := strings.CutSuffix(name, ".json")
		if !ok || !validObjectID(id) || !e.Type().IsRegular() {
			continue // temporary files of interrupted writes, strays
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile by another process
		}
		if err != nil {
			return nil, fmt.Errorf("stat object %s: %w", id, err)
		}
		out = append(out, objectEntry{id: id, stamp: stampOf(fi)})
	}
	// Oldest first, so handles given at load follow creation order.
	sort.Slice(out, func(i, j int) bool {
		if !out[i].stamp.mod.Equal(out[j].stamp.mod) {
			return out[i].stamp.mod.Before(out[j].stamp.mod)
		}
		return out[i].id < out[j].id
	})
	return out, nil
}

func validObjectID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

func newObjectID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux (Go ≥ 1.24)
	return hex.EncodeToString(b)
}

func (s *store) readObject(id string) (*object, error) {
	b, err := os.ReadFile(s.objectPath(id))
	if err != nil {
		return nil, fmt.Errorf("read object %s: %w", id, err)
	}
	var f objectFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("decode object %s: %w", id, err)
	}
	if f.ID != id {
		return nil, fmt.Errorf("object file %s names id %s", id, f.ID)
	}
	o, err := objectFromFile(&f)
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", id, err)
	}
	return o, nil
}

// writeObject stores o and records the new file stamp in it.
func (s *store) writeObject(o *object) error {
	if err := os.MkdirAll(s.objectsDir(), 0o700); err != nil {
		return fmt.Errorf("create objects directory: %w", err)
	}
	b, err := json.MarshalIndent(o.toFile(), "", "  ")
	if err != nil {
		return fmt.Errorf("encode object: %w", err)
	}
	if err := writeFileAtomic(s.objectPath(o.fileID), b); err != nil {
		return err
	}
	fi, err := os.Stat(s.objectPath(o.fileID))
	if err != nil {
		return fmt.Errorf("stat object: %w", err)
	}
	o.stamp = stampOf(fi)
	return nil
}

func (s *store) removeObject(id string) error {
	if err := os.Remove(s.objectPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove object %s: %w", id, err)
	}
	return syncDir(s.objectsDir())
}

// writeFileAtomic replaces path with data so that a crash leaves either the
// old or the new content: write a temporary file in the same directory,
// fsync it, rename it over path, fsync the directory.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("chmod temporary file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write temporary file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync temporary file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close temporary file: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// wipe removes every object file and writes a fresh token.json with a new
// token key protected by the SO PIN (C_InitToken, Base §5.5). Objects go
// first: after a crash in between, the old PINs still open an empty token.
// The caller holds the directory lock.
func (s *store) wipe(soPIN []byte, label string) (*tokenFile, fileStamp, error) {
	ents, err := s.listObjects()
	if err != nil {
		return nil, fileStamp{}, err
	}
	for _, e := range ents {
		if err := s.removeObject(e.id); err != nil {
			return nil, fileStamp{}, err
		}
	}
	serial := make([]byte, 8)
	_, _ = rand.Read(serial)
	tf := &tokenFile{
		Format:  tokenFormat,
		Label:   label,
		Serial:  strings.ToUpper(hex.EncodeToString(serial)),
		Created: time.Now().UTC().Truncate(time.Second),
		KDF:     defaultKDF,
	}
	key := make([]byte, tokenKeyLen)
	_, _ = rand.Read(key)
	defer clear(key)
	rec, err := wrapTokenKey(tf, roleSO, soPIN, key)
	if err != nil {
		return nil, fileStamp{}, err
	}
	tf.SO = *rec
	stamp, err := s.writeToken(tf)
	if err != nil {
		return nil, fileStamp{}, err
	}
	return tf, stamp, nil
}

// PIN roles, also used in the associated data of the wrapped token key.
const (
	roleSO   = "so"
	roleUser = "user"
)

// record returns the PIN record of role, nil if that PIN is not set.
func (tf *tokenFile) record(role string) *pinRecord {
	if role == roleSO {
		return &tf.SO
	}
	return tf.User
}

// The token key (an SM4 key) is wrapped once under the user PIN and once
// under the SO PIN. Wrapping it under the SO PIN too is what lets the SO
// reset a forgotten user PIN with C_InitPIN and keep the keys, as on a USB
// key; it also means the SO PIN alone decrypts the directory.

func pinAAD(tf *tokenFile, role string) []byte {
	return []byte("govtrust-p11 token key|" + tf.Serial + "|" + role)
}

func deriveKEK(tf *tokenFile, pin, salt []byte) []byte {
	return argon2.IDKey(pin, salt, tf.KDF.Time, tf.KDF.MemoryKiB, tf.KDF.Threads, tokenKeyLen)
}

func wrapTokenKey(tf *tokenFile, role string, pin, key []byte) (*pinRecord, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	kek := deriveKEK(tf, pin, salt)
	defer clear(kek)
	w, err := seal(kek, key, pinAAD(tf, role))
	if err != nil {
		return nil, err
	}
	return &pinRecord{Salt: salt, WrappedKey: w}, nil
}

// unwrapTokenKey returns the token key, or errWrongPIN.
func unwrapTokenKey(tf *tokenFile, role string, rec *pinRecord, pin []byte) ([]byte, error) {
	kek := deriveKEK(tf, pin, rec.Salt)
	defer clear(kek)
	key, err := open(kek, rec.WrappedKey, pinAAD(tf, role))
	if err != nil {
		return nil, errWrongPIN
	}
	return key, nil
}

var errWrongPIN = errors.New("wrong PIN")

// seal encrypts with SM4-GCM (GB/T 32907, NIST SP 800-38D); the output is
// nonce || ciphertext || tag.
func seal(key, plaintext, aad []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, plaintext, aad), nil
}

func open(key, box, aad []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(box) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("sealed value too short")
	}
	n := aead.NonceSize()
	pt, err := aead.Open(nil, box[:n], box[n:], aad)
	if err != nil {
		return nil, fmt.Errorf("open sealed value: %w", err)
	}
	return pt, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := sm4.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sm4: %w", err)
	}
	aead, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

// attrAAD binds a sealed value to its token, object and attribute type, so
// sealed values cannot be swapped between objects or attributes.
func attrAAD(serial, id string, t uint) []byte {
	return fmt.Appendf(nil, "govtrust-p11 attribute|%s|%s|%#x", serial, id, t)
}
