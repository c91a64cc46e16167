package policy

import (
	"fmt"
	"strings"
)

// Level is a classification level, ordered: a principal sees and acts on a
// resource only when the resource's level is at or below the principal's
// clearance (policy platform.clearance). The zero value is Public, so a
// resource nobody classified is public and a principal nobody cleared sees
// only public resources.
type Level int

// Classification levels.
const (
	Public       Level = 0 // 公开
	Internal     Level = 1 // 内部
	Secret       Level = 2 // 秘密
	Confidential Level = 3 // 机密
)

var levelNames = [...]struct{ en, zh string }{
	Public:       {"public", "公开"},
	Internal:     {"internal", "内部"},
	Secret:       {"secret", "秘密"},
	Confidential: {"confidential", "机密"},
}

// Levels lists the levels from lowest to highest.
var Levels = []Level{Public, Internal, Secret, Confidential}

// Valid reports whether l is one of the four levels.
func (l Level) Valid() bool { return l >= Public && l <= Confidential }

// String returns the English name ("internal").
func (l Level) String() string {
	if !l.Valid() {
		return fmt.Sprintf("Level(%d)", int(l))
	}
	return levelNames[l].en
}

// Chinese returns the Chinese name ("内部").
func (l Level) Chinese() string {
	if !l.Valid() {
		return fmt.Sprintf("Level(%d)", int(l))
	}
	return levelNames[l].zh
}

// ParseLevel parses a level by its English name (any case) or its Chinese
// name: "public"/"公开", "internal"/"内部", "secret"/"秘密",
// "confidential"/"机密".
func ParseLevel(s string) (Level, error) {
	t := strings.TrimSpace(s)
	for l, n := range levelNames {
		if strings.EqualFold(t, n.en) || t == n.zh {
			return Level(l), nil
		}
	}
	return 0, fmt.Errorf("policy: unknown classification level %q", s)
}
