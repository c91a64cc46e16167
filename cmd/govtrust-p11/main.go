package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// main is the command-line tool of a normal build (go run / go build
// without -buildmode=c-shared); a c-shared build ignores it. It initialises
// a token directory so tests and developers can create a token without a
// PKCS#11 client.
func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage: govtrust-p11 --init [--dir DIR] --label LABEL (--so-pin PIN | --so-pin-file FILE)
                    [--pin PIN | --pin-file FILE] [--force]

Initialises a govtrust-p11 software token directory: sets the label and the
SO PIN and, when a user PIN is given, the user PIN too. DIR defaults to the
directory named by GOVTRUST_P11_DIR or GOVTRUST_P11_CONF, as the module uses.
An initialised token is only wiped with --force.

govtrust-p11 is a SOFTWARE token with no hardware protection; see README.md.
`

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("govtrust-p11", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	initFlag := fs.Bool("init", false, "initialise the token directory")
	dir := fs.String("dir", "", "token directory")
	label := fs.String("label", "", "token label, at most 32 bytes")
	soPIN := fs.String("so-pin", "", "SO PIN")
	soPINFile := fs.String("so-pin-file", "", "file holding the SO PIN")
	pin := fs.String("pin", "", "user PIN")
	pinFile := fs.String("pin-file", "", "file holding the user PIN")
	force := fs.Bool("force", false, "wipe an already initialised token")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !*initFlag || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	if err := initCommand(getenv, *dir, *label, *soPIN, *soPINFile, *pin, *pinFile, *force, stdout); err != nil {
		fmt.Fprintf(stderr, "govtrust-p11: %v\n", err)
		return 1
	}
	return 0
}

func initCommand(getenv func(string) string, dir, label, soPIN, soPINFile, pin, pinFile string, force bool, stdout io.Writer) error {
	if dir == "" {
		d, err := loadDir(getenv)
		if err != nil {
			return fmt.Errorf("no --dir: %w", err)
		}
		dir = d
	}
	if label == "" || len(label) > 32 {
		return errors.New("--label must be 1 to 32 bytes")
	}
	so, err := secret("SO PIN", soPIN, soPINFile)
	if err != nil {
		return err
	}
	if so == nil {
		return errors.New("an SO PIN is required (--so-pin or --so-pin-file)")
	}
	user, err := secret("user PIN", pin, pinFile)
	if err != nil {
		return err
	}
	for _, p := range [][]byte{so, user} {
		if p != nil && !pinLenOK(p) {
			return fmt.Errorf("PINs must be %d to %d bytes", minPINLen, maxPINLen)
		}
	}
	tf, err := initDirectory(dir, label, so, user, force)
	if err != nil {
		return err
	}
	state := "user PIN set"
	if user == nil {
		state = "user PIN not set (use C_InitPIN)"
	}
	fmt.Fprintf(stdout, "initialised software token %q, serial %s, in %s; %s\n", tf.Label, tf.Serial, dir, state)
	return nil
}

// secret returns a PIN given inline or in a file (trailing newline removed),
// or nil when neither is given.
func secret(what, inline, file string) ([]byte, error) {
	switch {
	case inline != "" && file != "":
		return nil, fmt.Errorf("give the %s inline or in a file, not both", what)
	case inline != "":
		return []byte(inline), nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read %s file: %w", what, err)
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	}
	return nil, nil
}

// initDirectory does what C_InitToken followed by C_InitPIN does, without a
// session. Unlike C_InitToken it does not ask for the old SO PIN when
// forced: whoever can run it can delete the directory anyway.
func initDirectory(dir, label string, soPIN, userPIN []byte, force bool) (*tokenFile, error) {
	st := &store{dir: dir}
	unlock, err := st.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	old, _, err := st.readToken()
	if err != nil && !force {
		return nil, err
	}
	if old != nil && !force {
		return nil, fmt.Errorf("%s already holds token %q; use --force to wipe it", dir, old.Label)
	}
	tf, _, err := st.wipe(soPIN, label)
	if err != nil {
		return nil, fmt.Errorf("initialise token: %w", err)
	}
	if userPIN == nil {
		return tf, nil
	}
	key, err := unwrapTokenKey(tf, roleSO, &tf.SO, soPIN)
	if err != nil {
		return nil, fmt.Errorf("initialise token: %w", err)
	}
	defer clear(key)
	rec, err := wrapTokenKey(tf, roleUser, userPIN, key)
	if err != nil {
		return nil, fmt.Errorf("set user PIN: %w", err)
	}
	tf.User = rec
	if _, err := st.writeToken(tf); err != nil {
		return nil, fmt.Errorf("set user PIN: %w", err)
	}
	return tf, nil
}
