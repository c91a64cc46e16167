package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// These tests reach the decoders of the on-disk formats and of caller
// templates directly; main_test drives everything else through the built
// shared object.

func sampleObject() *object {
	return &object{
		fileID: "00112233445566778899aabbccddeeff",
		attrs: attrMap{
			ckaClass:    encUlong(ckoPrivateKey),
			ckaKeyType:  encUlong(ckkSM2),
			ckaToken:    encBool(true),
			ckaLabel:    []byte("seal"),
			ckaECParams: paramsSM2,
		},
		sealed: map[uint][]byte{ckaValue: {1, 2, 3}},
	}
}

func FuzzObjectFile(f *testing.F) {
	seed, err := json.Marshal(sampleObject().toFile())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"format":"govtrust-p11-object/1","id":"x","attributes":[{"type":0,"ulong":1}]}`))
	f.Add([]byte(`{"format":"govtrust-p11-object/1","attributes":[{"type":1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var of objectFile
		if json.Unmarshal(data, &of) != nil {
			return
		}
		o, err := objectFromFile(&of)
		if err != nil {
			return
		}
		// What decodes must encode to the same object again.
		b, err := json.Marshal(o.toFile())
		if err != nil {
			t.Fatal(err)
		}
		var of2 objectFile
		if err := json.Unmarshal(b, &of2); err != nil {
			t.Fatal(err)
		}
		o2, err := objectFromFile(&of2)
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if len(o2.attrs) != len(o.attrs) || len(o2.sealed) != len(o.sealed) {
			t.Fatalf("round trip changed the object")
		}
		for k, v := range o.attrs {
			if !bytes.Equal(o2.attrs[k], v) {
				t.Fatalf("attribute %#x changed in the round trip", k)
			}
		}
	})
}

func FuzzParseTemplate(f *testing.F) {
	f.Add(uint64(ckaToken), []byte{1}, uint64(ckaClass), encUlong(ckoData))
	f.Add(uint64(ckaLabel), []byte("x"), uint64(ckaLabel), []byte("y"))
	f.Add(uint64(ckaStartDate), []byte("20260101"), uint64(0x7fff0001), []byte{})
	f.Fuzz(func(t *testing.T, t1 uint64, v1 []byte, t2 uint64, v2 []byte) {
		m, r := parseTemplate([]attribute{{uint(t1), v1}, {uint(t2), v2}})
		if r != ckrOK {
			return
		}
		for typ, v := range m {
			switch attrDefs[typ].kind {
			case kindBool:
				if len(v) != 1 || v[0] > 1 {
					t.Fatalf("bool %#x not normalised: %x", typ, v)
				}
			case kindUlong:
				if len(v) != ulongSize {
					t.Fatalf("ulong %#x has %d bytes", typ, len(v))
				}
			}
		}
	})
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.conf", "# token\n\ndirectory = tokens/a\n")
	abs := write("abs.conf", "directory=/var/lib/p11\n")
	for name, tc := range map[string]struct {
		env  map[string]string
		want string // "" means an error
	}{
		"dir":             {map[string]string{envDir: "/srv/t"}, "/srv/t"},
		"relative conf":   {map[string]string{envConf: good}, filepath.Join(dir, "tokens/a")},
		"absolute conf":   {map[string]string{envConf: abs}, "/var/lib/p11"},
		"both":            {map[string]string{envDir: "/srv/t", envConf: good}, ""},
		"neither":         {nil, ""},
		"unknown key":     {map[string]string{envConf: write("k.conf", "directory = x\npin = 1234\n")}, ""},
		"no directory":    {map[string]string{envConf: write("e.conf", "# nothing\n")}, ""},
		"not key = value": {map[string]string{envConf: write("b.conf", "directory\n")}, ""},
		"missing file":    {map[string]string{envConf: filepath.Join(dir, "none.conf")}, ""},
	} {
		got, err := loadDir(func(k string) string { return tc.env[k] })
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: got %q, want an error", name, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, tc.want)
		}
	}
}
