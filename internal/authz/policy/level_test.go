package policy

import "testing"

func TestParseLevel(t *testing.T) {
	cases := []struct {
		in   string
		want Level
		ok   bool
	}{
		{"public", Public, true},
		{"公开", Public, true},
		{"internal", Internal, true},
		{"内部", Internal, true},
		{"secret", Secret, true},
		{"秘密", Secret, true},
		{"confidential", Confidential, true},
		{"机密", Confidential, true},
		{"  Secret ", Secret, true},
		{"CONFIDENTIAL", Confidential, true},
		{"", 0, false},
		{"top secret", 0, false},
		{"绝密", 0, false}, // top secret is not a level of the platform
		{"2", 0, false},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseLevel(c.in)
			if (err == nil) != c.ok || got != c.want {
				t.Fatalf("ParseLevel(%q) = %v, %v; want %v ok=%t", c.in, got, err, c.want, c.ok)
			}
		})
	}
}

func TestLevelOrderAndNames(t *testing.T) {
	for i, l := range Levels {
		if int(l) != i || !l.Valid() {
			t.Fatalf("level %d is %d", i, l)
		}
		for _, s := range []string{l.String(), l.Chinese()} {
			if back, err := ParseLevel(s); err != nil || back != l {
				t.Errorf("round trip %q: %v %v", s, back, err)
			}
		}
	}
	if !(Public < Internal && Internal < Secret && Secret < Confidential) {
		t.Fatal("levels out of order")
	}
	for _, l := range []Level{-1, 4} {
		if l.Valid() || l.String() == "" || l.Chinese() == "" {
			t.Errorf("invalid level %d: valid=%t %q %q", l, l.Valid(), l.String(), l.Chinese())
		}
	}
	p := Principal{Clearance: Secret}
	for _, c := range []struct {
		l    Level
		want bool
	}{{Public, true}, {Internal, true}, {Secret, true}, {Confidential, false}, {-1, false}, {7, false}} {
		if got := p.Cleared(c.l); got != c.want {
			t.Errorf("Secret cleared for %d: %t", c.l, got)
		}
	}
	if (Principal{Clearance: 9}).Cleared(Public) {
		t.Error("an invalid clearance sees something")
	}
}
