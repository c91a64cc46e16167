package crl

import (
	"fmt"
	"math/big"
	"time"
)

// NextNumber is the number of the CRL that follows the one numbered prev
// (0 for none) and is made at the time at: at in Unix microseconds, or
// prev+1 when that is not larger.
//
// A plain counter repeats numbers when the database that holds it is
// restored from a backup: the CRLs published between the backup and the
// restore have numbers the restored counter has not reached, and relying
// parties that saw them would take the next CRL for an old one
// (RELIABILITY.md I5). A number derived from the time is above them as long
// as the clock has moved on since, which it has after a restore; Boulder
// numbers its CRLs by their time for the same reason. prev+1 keeps the
// sequence increasing when the clock stands still or goes back. Only a
// restore and a clock set back together can repeat a number; CheckNumber
// catches what is still stored. Microseconds since 1970 stay below 2^63
// until the year 294,000, far inside the 20 octets RFC 5280 allows.
func NextNumber(prev int64, at time.Time) int64 {
	return max(prev+1, at.UnixMicro())
}

// CheckNumber is the publish guard: a CRL may replace the one published for
// the same issuer and scope only if its number is strictly greater (RFC 5280
// §5.2.3; Boulder's storer makes the same check against clock skew and
// races). prev is nil when nothing has been published yet. The CA raises an
// alert on ErrNumberRegression instead of publishing.
func CheckNumber(prev, next *big.Int) error {
	if !validNumber(next) {
		return fmt.Errorf("%w: CRL number %v outside 1..2^159-1", ErrInvalid, next)
	}
	if prev != nil && next.Cmp(prev) <= 0 {
		return fmt.Errorf("%w: %v after %v", ErrNumberRegression, next, prev)
	}
	return nil
}

// RefreshAt is when a CRL valid from thisUpdate to nextUpdate should be
// replaced on schedule: after two thirds of its interval. The promise is that
// a replacement is published before three quarters (ACCEPTANCE.md C-04, see
// RefreshDeadline); starting at two thirds leaves a twelfth of the interval
// (50 s of a 10 min CRL, 14 h of a 7 day one) for building, signing and
// publishing, and for a retry.
func RefreshAt(thisUpdate, nextUpdate time.Time) time.Time {
	return thisUpdate.Add(nextUpdate.Sub(thisUpdate) * 2 / 3)
}

// RefreshDeadline is when three quarters of the interval have passed: a CRL
// still served then breaks the freshness promise, and the CA should alert.
func RefreshDeadline(thisUpdate, nextUpdate time.Time) time.Time {
	return thisUpdate.Add(nextUpdate.Sub(thisUpdate) * 3 / 4)
}

// RefreshDue reports whether the CRL valid from thisUpdate to nextUpdate is
// due for its scheduled replacement at now (at or after RefreshAt). A CRL whose
// nextUpdate is not after its thisUpdate is always due.
func RefreshDue(thisUpdate, nextUpdate, now time.Time) bool {
	if !nextUpdate.After(thisUpdate) {
		return true
	}
	return !now.Before(RefreshAt(thisUpdate, nextUpdate))
}

// Retain reports whether a revoked certificate that expires at notAfter must
// still be listed on the next full CRL, given the thisUpdate of the last
// regularly scheduled full CRL that was published for its scope and listed it
// (zero if none). RFC 5280 §3.3 and BR §4.10.1: an entry stays until it has
// appeared on one regularly scheduled CRL issued after the certificate
// expired; a CRL issued off the schedule (at once after a revocation) does
// not count. Entries are dropped only by this rule, so a scheduled full CRL
// with thisUpdate after notAfter did list it, and the entry may go; until
// then it stays.
func Retain(notAfter, lastFullThisUpdate time.Time) bool {
	return lastFullThisUpdate.IsZero() || !lastFullThisUpdate.After(notAfter)
}
