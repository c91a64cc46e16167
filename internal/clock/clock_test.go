package clock

import (
	"testing"
	"time"
)

func TestFake(t *testing.T) {
	start := time.Date(2026, 11, 21, 8, 0, 0, 0, time.FixedZone("CST", 8*3600))
	f := NewFake(start)
	if got := f.Now(); !got.Equal(start) || got.Location() != time.UTC {
		t.Fatalf("Now = %v, want %v in UTC", got, start)
	}
	f.Add(90 * time.Second)
	if got := f.Now().Sub(start); got != 90*time.Second {
		t.Fatalf("after Add: moved %v", got)
	}
	f.Add(-time.Hour)
	if !f.Now().Before(start) {
		t.Fatal("a negative Add must move the clock back")
	}
	f.Set(start)
	if !f.Now().Equal(start) {
		t.Fatal("Set did not set")
	}
}

func TestRealIsUTC(t *testing.T) {
	if New().Now().Location() != time.UTC {
		t.Fatal("Real clock must return UTC")
	}
}
