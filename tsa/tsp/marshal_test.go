package tsp

import (
	"bytes"
	"encoding/asn1"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// marshalWithBuilder is the cryptobyte encoding TSTInfo.Marshal replaced,
// kept as the oracle it must match.
func marshalWithBuilder(t *TSTInfo) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		b.AddASN1ObjectIdentifier(t.Policy)
		addImprint(b, &t.MessageImprint)
		b.AddASN1BigInt(t.SerialNumber)
		b.AddASN1(cbasn1.GeneralizedTime, func(b *cryptobyte.Builder) { b.AddBytes(appendGenTime(nil, t.GenTime)) })
		if t.Accuracy > 0 {
			secs := int64(t.Accuracy / time.Second)
			millis := int64(t.Accuracy%time.Second) / int64(time.Millisecond)
			micros := int64(t.Accuracy%time.Millisecond) / int64(time.Microsecond)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if secs > 0 {
					b.AddASN1Int64(secs)
				}
				if millis > 0 {
					b.AddASN1Int64WithTag(millis, cbasn1.Tag(0).ContextSpecific())
				}
				if micros > 0 {
					b.AddASN1Int64WithTag(micros, cbasn1.Tag(1).ContextSpecific())
				}
			})
		}
		if t.Ordering {
			b.AddASN1Boolean(true)
		}
		if t.Nonce != nil {
			b.AddASN1BigInt(t.Nonce)
		}
		if t.TSA != nil {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(t.TSA) })
		}
		if len(t.Extensions) > 0 {
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { addExtensions(b, t.Extensions) })
		}
	})
	return b.Bytes()
}

// TestMarshalMatchesBuilder: the hand-appended TSTInfo is octet for octet
// the cryptobyte one, over the edges of each field and random values, and
// parses back to the same fields.
func TestMarshalMatchesBuilder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randInt := func(bits int) *big.Int {
		b := make([]byte, (bits+7)/8)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		b[0] |= 0x80 >> ((8 - bits%8) % 8) // exactly bits long: every length is tried
		b[0] &= 0xff >> ((8 - bits%8) % 8)
		return new(big.Int).SetBytes(b)
	}
	gen := time.Date(2026, 11, 21, 10, 20, 30, 0, time.UTC)
	req := NewRequest(SM3, make([]byte, 32), nil, false)
	der, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	base := func() *TSTInfo {
		return &TSTInfo{
			Version:        1,
			Policy:         asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 1},
			MessageImprint: parsed.MessageImprint, // raw, as the TSA has it
			SerialNumber:   big.NewInt(1),
			GenTime:        gen,
		}
	}
	cases := map[string]func(*TSTInfo){
		"minimal":         func(*TSTInfo) {},
		"serial high bit": func(i *TSTInfo) { i.SerialNumber = big.NewInt(0x80) },
		"serial 0xff":     func(i *TSTInfo) { i.SerialNumber = big.NewInt(0xff) },
		"serial 160 bits": func(i *TSTInfo) {
			i.SerialNumber = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 160), big.NewInt(1))
		},
		"nonce zero":      func(i *TSTInfo) { i.Nonce = big.NewInt(0) },
		"nonce negative":  func(i *TSTInfo) { i.Nonce = big.NewInt(-129) },
		"nonce 0x80":      func(i *TSTInfo) { i.Nonce = big.NewInt(0x80) },
		"nonce 300 bits":  func(i *TSTInfo) { i.Nonce = new(big.Int).Lsh(big.NewInt(3), 298) },
		"accuracy 1s":     func(i *TSTInfo) { i.Accuracy = time.Second },
		"accuracy 999ms":  func(i *TSTInfo) { i.Accuracy = 999 * time.Millisecond },
		"accuracy 1us":    func(i *TSTInfo) { i.Accuracy = time.Microsecond },
		"accuracy all":    func(i *TSTInfo) { i.Accuracy = 128*time.Second + 500*time.Millisecond + 200*time.Microsecond },
		"accuracy 40000s": func(i *TSTInfo) { i.Accuracy = 40000 * time.Second },
		"ordering":        func(i *TSTInfo) { i.Ordering = true },
		"tsa name":        func(i *TSTInfo) { i.TSA = []byte{0xa4, 0x02, 0x30, 0x00} },
		"extensions": func(i *TSTInfo) {
			i.Extensions = []Extension{{ID: asn1.ObjectIdentifier{1, 2, 3}, Critical: true, Value: []byte{5, 0}}}
		},
		"imprint not raw": func(i *TSTInfo) {
			i.MessageImprint = MessageImprint{HashAlgorithm: SHA256.OID, HashedMessage: make([]byte, 32)}
		},
		"policy big arcs":     func(i *TSTInfo) { i.Policy = asn1.ObjectIdentifier{2, 999, 1 << 40, 127, 128, 16383, 16384} },
		"gen time fraction":   func(i *TSTInfo) { i.GenTime = gen.Add(120 * time.Millisecond) },
		"gen time year 2050+": func(i *TSTInfo) { i.GenTime = time.Date(2051, 1, 2, 3, 4, 5, 6e6, time.UTC) },
	}
	check := func(name string, info *TSTInfo) {
		t.Helper()
		want, werr := marshalWithBuilder(info)
		got, gerr := info.Marshal()
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("%s: errors differ: builder %v, Marshal %v", name, werr, gerr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: encodings differ\n got % x\nwant % x", name, got, want)
		}
		if gerr != nil {
			return
		}
		back, err := ParseTSTInfo(got)
		if err != nil {
			// ParseTSTInfo is strict about what the TSA issues; the
			// encodings are equal, which is what this test is for.
			return
		}
		if back.SerialNumber.Cmp(info.SerialNumber) != 0 || !back.Policy.Equal(info.Policy) || back.Accuracy != info.Accuracy {
			t.Fatalf("%s: parsed back differently: %+v", name, back)
		}
	}
	for name, mod := range cases {
		info := base()
		mod(info)
		check(name, info)
	}
	for i := range 2000 {
		info := base()
		info.SerialNumber = randInt(1 + rng.IntN(160))
		if rng.IntN(2) == 0 {
			info.Nonce = randInt(1 + rng.IntN(256))
			if rng.IntN(8) == 0 {
				info.Nonce.Neg(info.Nonce)
			}
		}
		info.Accuracy = time.Duration(rng.Int64N(int64(100 * time.Second))).Truncate(time.Microsecond)
		info.Ordering = rng.IntN(4) == 0
		info.GenTime = gen.Add(time.Duration(rng.Int64N(int64(365 * 24 * time.Hour))))
		info.Policy = asn1.ObjectIdentifier{rng.IntN(3), rng.IntN(40), rng.IntN(1 << 20), rng.IntN(200)}
		check("random "+string(rune('0'+i%10)), info)
	}
}

// TestMarshalRefuses: what cryptobyte refused stays refused.
func TestMarshalRefuses(t *testing.T) {
	for name, info := range map[string]*TSTInfo{
		"one arc":         {Policy: asn1.ObjectIdentifier{1}, SerialNumber: big.NewInt(1)},
		"first arc 3":     {Policy: asn1.ObjectIdentifier{3, 1}, SerialNumber: big.NewInt(1)},
		"second arc 40":   {Policy: asn1.ObjectIdentifier{1, 40}, SerialNumber: big.NewInt(1)},
		"negative arc":    {Policy: asn1.ObjectIdentifier{1, 2, -3}, SerialNumber: big.NewInt(1)},
		"zero serial":     {Policy: asn1.ObjectIdentifier{1, 2}, SerialNumber: big.NewInt(0)},
		"161-bit serial":  {Policy: asn1.ObjectIdentifier{1, 2}, SerialNumber: new(big.Int).Lsh(big.NewInt(1), 160)},
		"negative serial": {Policy: asn1.ObjectIdentifier{1, 2}, SerialNumber: big.NewInt(-5)},
	} {
		if der, err := info.Marshal(); err == nil {
			t.Errorf("%s: Marshal gave % x, want an error", name, der)
		}
	}
}

func BenchmarkTSTInfoMarshal(b *testing.B) {
	req := NewRequest(SM3, make([]byte, 32), big.NewInt(1<<62), false)
	der, _ := req.Marshal()
	parsed, _ := ParseRequest(der)
	info := &TSTInfo{Policy: asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 1}, MessageImprint: parsed.MessageImprint,
		SerialNumber: new(big.Int).Lsh(big.NewInt(12345), 100), GenTime: time.Now(), Accuracy: time.Second, Nonce: parsed.Nonce}
	b.Run("append", func(b *testing.B) {
		for b.Loop() {
			if _, err := info.Marshal(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cryptobyte", func(b *testing.B) {
		for b.Loop() {
			if _, err := marshalWithBuilder(info); err != nil {
				b.Fatal(err)
			}
		}
	})
}
