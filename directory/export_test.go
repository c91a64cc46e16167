package directory

import (
	"testing"
	"time"
)

// SetExternalLease makes the external publishers of the services started
// from now on hold their leases for ttl and call beforePush (when not nil)
// before each entry's push, until the test ends. Call it before starting
// them: its cleanup then runs after they stopped.
func SetExternalLease(t testing.TB, ttl time.Duration, beforePush func(s *Service, norm string)) {
	oldTTL, oldHook := externalLeaseTTL, testBeforePush
	externalLeaseTTL, testBeforePush = ttl, beforePush
	t.Cleanup(func() { externalLeaseTTL, testBeforePush = oldTTL, oldHook })
}

// LeaseOwner returns the name s holds leases under.
func LeaseOwner(s *Service) string { return s.owner }
