package tsa

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/govtrust/govtrust/tsa/tsp"
)

// The TSA's trusted time (RFC 3628 §7.3.2, "clock synchronized with UTC
// within the declared accuracy"): the clock is compared with NTP servers
// (an SNTP client, RFC 4330, is enough to measure the offset; the TSA does
// not steer the clock, the operating system's NTP daemon does). When the
// offset, widened by half the round trip and by the server's own root
// distance (root delay/2 + root dispersion, RFC 5905 §11.2.1), exceeds the
// accuracy the tokens state, or no server gives a usable answer, the TSA
// refuses with timeNotAvailable. An answer is unusable, as RFC 5905
// §A.5.1.1 has it, from a server that is unsynchronised (leap 3, stratum
// 0 or above 15, reference timestamp zero or later than its transmit
// time) or whose root distance reaches MAXDISP, and when its timestamps
// are inconsistent (a negative round trip).
//
// Between two polls the clock is watched against the monotonic clock,
// which no one sets: when the wall clock has moved by more than the
// monotonic clock since the last good poll (a VM resumed with a stale
// clock, date -s), so that the offset that poll measured, corrected by the
// step, exceeds the accuracy, or when the last good poll is older than
// twice tsa.ntp_interval and a poll's time (the loop stuck, in a rollover
// for instance), the TSA refuses with timeNotAvailable until a poll says
// otherwise; a step also asks for a poll at once.

// ntpUnixOffset is the seconds from 1900-01-01, the origin of NTP era 0
// (RFC 5905 §6), to the Unix epoch.
const ntpUnixOffset = 2208988800

// toNTP is the 64-bit NTP timestamp of t: seconds since 1900 modulo 2^32
// (the era is not on the wire) and a 32-bit fraction.
func toNTP(t time.Time) uint64 {
	sec := uint64(t.Unix() + ntpUnixOffset)
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return sec<<32 | frac
}

// fromNTP reads the NTP timestamp v in the era that puts it closest to
// near, the local clock (RFC 5905 §6: within 68 years of it). The seconds
// wrap on 2036-02-07T06:28:16Z, which era 0 alone would read as 1900; the
// local clock, checked here and not blindly trusted, is much closer than 68
// years to the truth, which is all this needs (RFC 4330 §3's rule, most
// significant bit clear = era 1, is the same choice for 1968-2104).
func fromNTP(v uint64, near time.Time) time.Time {
	sec, frac := uint32(v>>32), v&0xffffffff
	n := near.Unix() + ntpUnixOffset
	// The signed 32-bit difference picks the era closest to near.
	s := n + int64(int32(sec-uint32(n)))
	return time.Unix(s-ntpUnixOffset, int64(frac*uint64(time.Second)>>32)).UTC()
}

// ntpSample is one measurement against one server.
type ntpSample struct {
	server        string
	offset, delay time.Duration
	// rootDelay and rootDisp are the server's own round trip to, and
	// error against, its primary reference (RFC 5905 §7.3).
	rootDelay, rootDisp time.Duration
}

// width is how far the true offset may be from the one measured: half the
// round trip (the asymmetry the path may hide) plus the server's root
// distance, rootdelay/2 + rootdisp (RFC 5905 §11.2.1 without the terms for
// the time since the measurement, which check accounts for).
func (s ntpSample) width() time.Duration { return s.delay/2 + s.rootDelay/2 + s.rootDisp }

// ntpMaxDisp is MAXDISP (RFC 5905 §7.2): a server whose root distance
// reaches it is not synchronised, whatever its stratum says.
const ntpMaxDisp = 16 * time.Second

// ntpShort reads the NTP short format (RFC 5905 §6): unsigned 16.16 seconds.
func ntpShort(b []byte) time.Duration {
	return time.Duration(uint64(binary.BigEndian.Uint32(b)) * uint64(time.Second) >> 16)
}

// ntpPrecision is the clock precision an NTP packet states, 2^p seconds
// (RFC 5905 §7.3), taken as at most one second.
func ntpPrecision(p int8) time.Duration {
	switch {
	case p >= 0:
		return time.Second
	case p < -30:
		return time.Nanosecond
	}
	return time.Duration(float64(time.Second) / float64(uint64(1)<<uint(-p)))
}

// errNTPReply marks an answer to our request (it echoes our transmit
// timestamp) that cannot be used: asking the same server again at once
// would get the same (a lost packet is asked again, ntpTries).
var errNTPReply = errors.New("unusable NTP answer")

// queryNTP asks server once (RFC 4330 §5): a client-mode packet whose
// transmit timestamp is random, so an answer must echo it as its originate
// timestamp (a blind spoofer cannot guess it, RFC 5905 §8). now reads the
// clock under test.
func queryNTP(ctx context.Context, server string, now func() time.Time, timeout time.Duration) (ntpSample, error) {
	addr := server
	if _, _, err := net.SplitHostPort(server); err != nil {
		addr = net.JoinHostPort(server, "123")
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return ntpSample{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	req := make([]byte, 48)
	req[0] = 0<<6 | 4<<3 | 3 // LI 0, VN 4, mode 3 (client)
	cookie := make([]byte, 8)
	if _, err := rand.Read(cookie); err != nil {
		return ntpSample{}, err
	}
	copy(req[40:], cookie)
	t1 := now()
	if _, err := conn.Write(req); err != nil {
		return ntpSample{}, err
	}
	resp := make([]byte, 128)
	n, err := conn.Read(resp)
	t4 := now()
	if err != nil {
		return ntpSample{}, err
	}
	// Not our answer (a stale or forged one, which the next try, from
	// another port, will not see): a lost packet.
	if n < 48 {
		return ntpSample{}, errors.New("short NTP answer")
	}
	if string(resp[24:32]) != string(cookie) {
		return ntpSample{}, errors.New("NTP answer does not echo our transmit timestamp")
	}
	li, vn, mode, stratum := resp[0]>>6, resp[0]>>3&7, resp[0]&7, resp[1]
	rootDelay, rootDisp := ntpShort(resp[4:8]), ntpShort(resp[8:12])
	ref := binary.BigEndian.Uint64(resp[16:24])
	bad := func(format string, args ...any) (ntpSample, error) {
		return ntpSample{}, fmt.Errorf("%w: "+format, append([]any{errNTPReply}, args...)...)
	}
	switch {
	case mode != 4:
		return bad("mode %d is not server", mode)
	case vn < 3 || vn > 4:
		return bad("version %d", vn)
	case stratum == 0:
		// RFC 5905 §7.4: the reference ID is a kiss code (RATE, DENY…);
		// this server is asked once a poll at most, and polls back off.
		return bad("server unsynchronised (stratum 0, kiss code %q)", strings.TrimRight(string(resp[12:16]), "\x00"))
	case li == 3 || stratum > 15:
		return bad("server unsynchronised (leap %d, stratum %d)", li, stratum)
	case ref == 0:
		// RFC 5905 §A.5.1.1: a server that never set its clock.
		return bad("server unsynchronised (reference timestamp zero)")
	case rootDelay/2+rootDisp >= ntpMaxDisp:
		return bad("server root distance %s (root delay/2 %s + root dispersion %s) reaches MAXDISP %s (RFC 5905 §A.5.1.1)",
			rootDelay/2+rootDisp, rootDelay/2, rootDisp, ntpMaxDisp)
	}
	t2 := fromNTP(binary.BigEndian.Uint64(resp[32:40]), t1)
	t3 := fromNTP(binary.BigEndian.Uint64(resp[40:48]), t1)
	if reft := fromNTP(ref, t1); reft.After(t3) {
		return bad("server reference time %s is later than its transmit time %s (RFC 5905 §A.5.1.1)", reft.Format(time.RFC3339Nano), t3.Format(time.RFC3339Nano))
	}
	// RFC 5905 §8: offset θ = ((T2 − T1) + (T3 − T4)) / 2, delay δ = (T4 − T1) − (T3 − T2).
	offset := (t2.Sub(t1) + t3.Sub(t4)) / 2
	delay := t4.Sub(t1) - t3.Sub(t2)
	if delay < 0 {
		// The server says it held the request longer than the whole round
		// trip took. Within its clock's precision that is the coarseness of
		// its timestamps on a fast network, and RFC 5905 §A.5.1.1 takes the
		// precision as the delay; beyond it the timestamps are
		// inconsistent, and the offset computed from them cannot be
		// bounded.
		prec := ntpPrecision(int8(resp[3]))
		if -delay > prec {
			return bad("inconsistent timestamps: the server's hold time T3−T2 %s exceeds the round trip T4−T1 %s by more than its precision %s", t3.Sub(t2), t4.Sub(t1), prec)
		}
		delay = prec
	}
	return ntpSample{server: server, offset: offset, delay: delay, rootDelay: rootDelay, rootDisp: rootDisp}, nil
}

// timeState is what the TSA knows about its clock.
type timeState struct {
	ok     bool
	reason string
	// offset and width are the last measurement: the median offset and
	// the width of the sample it came from (ntpSample.width), so that the
	// true offset is within offset ± width.
	offset, width time.Duration
	// checked is the wall clock (without monotonic reading) and mono the
	// monotonic clock when the measurement ended.
	checked time.Time
	mono    time.Duration
}

// timeWatch keeps timeState current.
type timeWatch struct {
	servers  []string
	accuracy time.Duration
	// interval is tsa.ntp_interval: a state older than maxAge is stale.
	interval time.Duration
	now      func() time.Time
	// mono reads a monotonic clock; nil is monotonic.
	mono func() time.Duration
	// trustSystem is set when no server is configured in dev mode.
	trustSystem bool
	// reason is set when no server is configured outside dev mode.
	noSource string
	// kick asks the loop for a poll now (buffered, one pending at most).
	kick chan struct{}

	mu    sync.Mutex
	state timeState
}

// monoBase is the origin of monotonic: time.Now carries the monotonic
// reading that time.Since uses.
var monoBase = time.Now()

// monotonic is the time since the process started on the monotonic clock,
// which setting the wall clock does not move.
func monotonic() time.Duration { return time.Since(monoBase) }

// monoNow reads w.mono, or monotonic when it is nil.
func (w *timeWatch) monoNow() time.Duration {
	if w.mono != nil {
		return w.mono()
	}
	return monotonic()
}

// maxAge is how old the last good poll may be: two intervals, for a tick
// missed while the loop was busy, and the longest a poll may take (every
// try of every server timing out).
func (w *timeWatch) maxAge() time.Duration {
	return 2*w.interval + time.Duration(len(w.servers)*ntpTries)*ntpTimeout
}

// check is the state as it stands now: the last poll's, unless that said
// the time is trusted and since then the wall clock stepped away from the
// monotonic clock beyond the accuracy, or the poll is stale (maxAge).
func (w *timeWatch) check() timeState {
	st := w.get()
	if !st.ok || w.trustSystem {
		return st
	}
	since := w.monoNow() - st.mono
	// Wall time without a monotonic reading, or Sub would use that.
	step := w.now().Round(0).Sub(st.checked) - since
	offset := st.offset - step
	switch {
	case since > w.maxAge():
		st.ok = false
		st.reason = fmt.Sprintf("time not checked for %s: the last good NTP poll is older than twice tsa.ntp_interval and a poll's time (%s)", since.Round(time.Millisecond), w.maxAge())
	case !w.within(offset, st.width):
		st.ok = false
		st.reason = fmt.Sprintf("the clock moved %s against the monotonic clock in the %s since the last NTP poll: offset %s (±%s, + genTime resolution %s) exceeds the stated accuracy %s",
			step, since.Round(time.Millisecond), offset, st.width, tsp.GenTimePrecision, w.accuracy)
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return st
}

// within reports whether a token made now is as accurate as it says: the
// clock is offset ± width from UTC, and genTime, truncated to
// tsp.GenTimePrecision after the clock is read, up to that much earlier
// still; the sum must not exceed the stated accuracy (RFC 3161 §2.4.2: the
// time is genTime ± accuracy). An accuracy not above GenTimePrecision can
// never be met.
func (w *timeWatch) within(offset, width time.Duration) bool {
	return offset.Abs()+width+tsp.GenTimePrecision <= w.accuracy
}

// Tries and timeout per server and round.
const (
	ntpTries   = 3
	ntpTimeout = time.Second
)

// ntpRetryMin is the wait before the first retry of a failed poll.
const ntpRetryMin = time.Second

// retry is the wait before the poll after one that left the time ok or not
// (RFC 5905 §7.3 polls no more often than the interval; a few lost packets
// need not cost one): backoff is the wait that led to that poll when it was
// a retry, zero otherwise, and the wait returned is the next backoff. A
// failed poll is tried again after ntpRetryMin, then twice as long each
// time, up to tsa.ntp_interval; a good one, or a failure that asking again
// cannot mend (no server configured), waits the interval.
func (w *timeWatch) retry(ok bool, backoff time.Duration) (wait time.Duration, retrying bool) {
	if ok || w.trustSystem || len(w.servers) == 0 {
		return w.interval, false
	}
	if backoff = max(2*backoff, ntpRetryMin); backoff >= w.interval {
		return w.interval, true
	}
	return backoff, true
}

// poll asks every server and updates the state: a round in which no server
// answers loses the time source; otherwise the median sample decides.
func (w *timeWatch) poll(ctx context.Context) timeState {
	if w.trustSystem || w.noSource != "" {
		st := timeState{ok: w.trustSystem, reason: w.noSource, checked: w.now().Round(0), mono: w.monoNow()}
		w.set(st)
		return st
	}
	var samples []ntpSample
	var errs []string
	for _, s := range w.servers {
		var err error
		for range ntpTries {
			var smp ntpSample
			if smp, err = queryNTP(ctx, s, w.now, ntpTimeout); err == nil {
				samples = append(samples, smp)
				break
			}
			if errors.Is(err, errNTPReply) {
				break // the server answered: asking again now gets the same
			}
		}
		if err != nil {
			errs = append(errs, s+": "+err.Error())
		}
	}
	st := timeState{checked: w.now().Round(0), mono: w.monoNow()}
	if len(samples) == 0 {
		st.reason = "time source lost: no NTP server gave a usable answer (" + strings.Join(errs, "; ") + ")"
		w.set(st)
		return st
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i].offset < samples[j].offset })
	m := samples[len(samples)/2]
	st.offset, st.width = m.offset, m.width()
	if !w.within(m.offset, st.width) {
		st.reason = fmt.Sprintf("clock offset %s (±%s: round trip/2 %s + server root delay/2 %s + root dispersion %s) from %s, + genTime resolution %s, exceeds the stated accuracy %s",
			m.offset, st.width, m.delay/2, m.rootDelay/2, m.rootDisp, m.server, tsp.GenTimePrecision, w.accuracy)
	} else {
		st.ok = true
	}
	w.set(st)
	return st
}

func (w *timeWatch) set(st timeState) {
	w.mu.Lock()
	w.state = st
	w.mu.Unlock()
}

func (w *timeWatch) get() timeState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}
