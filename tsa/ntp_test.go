package tsa

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/clock"
)

// A server's answer is usable only when it is synchronised and consistent
// (RFC 5905 §A.5.1.1), and the error bound compared with the accuracy
// counts the server's root distance, not only the round trip to it.
func TestNTPUnusableAnswers(t *testing.T) {
	for _, c := range []struct {
		name   string
		set    func(*fakeNTP)
		ok     bool
		reason string
	}{
		{"good", func(*fakeNTP) {}, true, ""},
		{"small root distance", func(f *fakeNTP) {
			f.rootDelay.Store(int64(100 * time.Millisecond))
			f.rootDisp.Store(int64(200 * time.Millisecond))
		}, true, ""},
		{"free-running for long", func(f *fakeNTP) {
			f.rootDelay.Store(int64(10 * time.Second))
			f.rootDisp.Store(int64(30 * time.Second))
		}, false, "root distance 35s (root delay/2 5s + root dispersion 30s) reaches MAXDISP 16s"},
		{"root distance just at MAXDISP", func(f *fakeNTP) { f.rootDisp.Store(int64(16 * time.Second)) }, false, "reaches MAXDISP"},
		{"never synchronised", func(f *fakeNTP) { f.zeroRef.Store(true) }, false, "reference timestamp zero"},
		{"kiss-o'-death", func(f *fakeNTP) { f.kiss.Store(true) }, false, `stratum 0, kiss code "RATE"`},
		{"reference after transmit", func(f *fakeNTP) { f.ref.Store(int64(-time.Hour)) }, false, "is later than its transmit time"},
		{"negative round trip", func(f *fakeNTP) { f.hold.Store(int64(2 * time.Second)) }, false, "hold time T3−T2 2s exceeds the round trip"},
		{"negative round trip within a coarse server's precision", func(f *fakeNTP) {
			f.precision.Store(14) // 2^-6 s, 15.6 ms: a w32time-like clock
			f.hold.Store(int64(5 * time.Millisecond))
		}, true, ""},
		{"negative round trip beyond the server's precision", func(f *fakeNTP) { f.hold.Store(int64(5 * time.Millisecond)) }, false,
			"by more than its precision"},
		{"root dispersion beyond the accuracy", func(f *fakeNTP) { f.rootDisp.Store(int64(1500 * time.Millisecond)) }, false,
			"+ root dispersion 1.5s) from 127.0.0.1"},
		{"root delay beyond the accuracy", func(f *fakeNTP) { f.rootDelay.Store(int64(2500 * time.Millisecond)) }, false,
			"+ server root delay/2 1.25s + root dispersion 0s) from 127.0.0.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ntp := newFakeNTP(t)
			c.set(ntp)
			w := &timeWatch{servers: []string{ntp.addr()}, accuracy: time.Second, interval: time.Minute, now: time.Now, kick: make(chan struct{}, 1)}
			st := w.poll(context.Background())
			if st.ok != c.ok || !strings.Contains(st.reason, c.reason) {
				t.Fatalf("poll: %+v, want ok %v and a reason with %q", st, c.ok, c.reason)
			}
			if !c.ok && !strings.Contains(st.reason, "exceeds the stated accuracy") && ntp.requests.Load() != 1 {
				// An answer that cannot be used is not asked for again at
				// once: the same server would give the same.
				t.Errorf("%d requests for one unusable answer", ntp.requests.Load())
			}
		})
	}
}

// An answer that does not echo the request's transmit timestamp is not
// one (stale, or forged by someone who did not see the request): it is
// taken as a lost packet, and the server asked again.
func TestNTPAnswerNotOurs(t *testing.T) {
	ntp := newFakeNTP(t)
	ntp.otherCookie.Store(true)
	w := &timeWatch{servers: []string{ntp.addr()}, accuracy: time.Second, interval: time.Minute, now: time.Now, kick: make(chan struct{}, 1)}
	if st := w.poll(context.Background()); st.ok || !strings.Contains(st.reason, "does not echo our transmit timestamp") {
		t.Fatalf("poll: %+v", st)
	}
	if n := ntp.requests.Load(); n != ntpTries {
		t.Errorf("%d requests, want %d", n, ntpTries)
	}
}

// Between polls the clock is compared with the accuracy with the width the
// poll measured, the server's root distance included: a step that the
// round trip alone would leave within the accuracy is not.
func TestClockStepCountsRootDistance(t *testing.T) {
	ntp := newFakeNTP(t)
	at := time.Now().Round(time.Second)
	// Server and client clocks stand still at the same instant: offset
	// and round trip are exactly zero, the width is the root distance.
	ntp.at.Store(at.UnixNano())
	ntp.rootDisp.Store(int64(700 * time.Millisecond))
	wall := clock.NewFake(at)
	var mono time.Duration
	w := &timeWatch{servers: []string{ntp.addr()}, accuracy: time.Second, interval: time.Minute, now: wall.Now,
		mono: func() time.Duration { return mono }, kick: make(chan struct{}, 1)}
	if st := w.poll(context.Background()); !st.ok || st.offset != 0 {
		t.Fatalf("poll: %+v", st)
	}
	wall.Add(250 * time.Millisecond)
	if st := w.check(); !st.ok {
		t.Fatalf("250 ms step, 700 ms root dispersion, 1 s accuracy: %+v", st)
	}
	wall.Add(150 * time.Millisecond)
	if st := w.check(); st.ok || !strings.Contains(st.reason, "exceeds the stated accuracy") {
		t.Fatalf("400 ms step, 700 ms root dispersion, 1 s accuracy: %+v", st)
	}
}

// /readyz says which it was: a server whose root distance is beyond the
// accuracy, or one whose answers cannot be used.
func TestReadyzSaysWhyTime(t *testing.T) {
	ntp := newFakeNTP(t)
	tn := startNode(t, filepath.Join(t.TempDir(), "data"), fmt.Sprintf("tsa:\n  ntp_servers: [%q]\n  ntp_interval: 1h\n  accuracy: 1s\n", ntp.addr()))
	ctx := context.Background()
	for _, c := range []struct {
		set  func()
		want string
	}{
		{func() { ntp.rootDisp.Store(int64(2 * time.Second)) }, "root dispersion 2s"},
		{func() { ntp.rootDisp.Store(int64(20 * time.Second)) }, "reaches MAXDISP 16s"},
		{func() { ntp.rootDisp.Store(0); ntp.zeroRef.Store(true) }, "reference timestamp zero"},
	} {
		c.set()
		tn.svc.clock.poll(ctx)
		status, body := tn.get("http://"+tn.n.Addresses().HTTP+"/readyz", "")
		if status != http.StatusServiceUnavailable || !strings.Contains(string(body), c.want) {
			t.Fatalf("readyz %d %s, want 503 with %q", status, body, c.want)
		}
	}
}

// genTime is the clock truncated to tsp.GenTimePrecision: the true time is
// up to that much further from it than from the clock, so it counts in the
// bound compared with the accuracy, at the poll and between polls.
func TestGenTimePrecisionInBound(t *testing.T) {
	ntp := newFakeNTP(t)
	at := time.Now().Round(time.Second)
	// Offset and round trip exactly zero: the bound is the root
	// dispersion, 999.5 ms, within 1 s; with genTime's 1 ms it is not.
	ntp.at.Store(at.UnixNano())
	ntp.rootDisp.Store(int64(999500 * time.Microsecond))
	wall := clock.NewFake(at)
	var mono time.Duration
	w := &timeWatch{servers: []string{ntp.addr()}, accuracy: time.Second, interval: time.Minute, now: wall.Now,
		mono: func() time.Duration { return mono }, kick: make(chan struct{}, 1)}
	if st := w.poll(context.Background()); st.ok || !strings.Contains(st.reason, "genTime resolution 1ms, exceeds the stated accuracy 1s") {
		t.Fatalf("poll, 999.5 ms root dispersion: %+v", st)
	}
	// 998.5 ms is within; a step of 0.6 ms between polls is not.
	ntp.rootDisp.Store(int64(998500 * time.Microsecond))
	if st := w.poll(context.Background()); !st.ok {
		t.Fatalf("poll, 998.5 ms root dispersion: %+v", st)
	}
	wall.Add(400 * time.Microsecond)
	if st := w.check(); !st.ok {
		t.Fatalf("0.4 ms step: %+v", st)
	}
	wall.Add(200 * time.Microsecond)
	if st := w.check(); st.ok || !strings.Contains(st.reason, "genTime resolution 1ms) exceeds the stated accuracy 1s") {
		t.Fatalf("0.6 ms step: %+v", st)
	}
	// An accuracy of 1 ms, genTime's resolution, is never met.
	ntp.rootDisp.Store(0)
	w.accuracy = time.Millisecond
	if st := w.poll(context.Background()); st.ok {
		t.Fatalf("accuracy 1 ms: %+v", st)
	}
}

// A failed poll is tried again after 1 s, then twice as long each time up
// to the interval; a good one waits the interval, and so does a failure
// that asking again cannot mend.
func TestPollRetryBackoff(t *testing.T) {
	w := &timeWatch{servers: []string{"127.0.0.1:1"}, interval: 64 * time.Second}
	var got []time.Duration
	wait, retrying := w.retry(false, 0)
	for range 9 {
		got = append(got, wait)
		if !retrying {
			t.Fatalf("a failed poll is not retried: %v", got)
		}
		wait, retrying = w.retry(false, wait)
	}
	if want := "[1s 2s 4s 8s 16s 32s 1m4s 1m4s 1m4s]"; fmt.Sprint(got) != want {
		t.Errorf("waits after failed polls %v, want %s", got, want)
	}
	if wait, retrying := w.retry(true, 32*time.Second); wait != w.interval || retrying {
		t.Errorf("after a good poll: %s %v", wait, retrying)
	}
	for _, w := range []*timeWatch{{interval: time.Minute, noSource: "none"}, {interval: time.Minute, trustSystem: true}} {
		if wait, retrying := w.retry(false, 0); wait != time.Minute || retrying {
			t.Errorf("no servers: %s %v", wait, retrying)
		}
	}
}

// A few seconds without answers, at start, cost no more than a few
// seconds of timeNotAvailable: the failed poll is tried again after 1 s,
// not at the next tsa.ntp_interval (an hour here). A healthy TSA does not
// poll more often than the interval, and a failing one backs off.
func TestPollRetriedAfterFailure(t *testing.T) {
	ntp := newFakeNTP(t)
	ntp.drop.Store(true) // packets lost: Start's poll fails
	tn := startNode(t, filepath.Join(t.TempDir(), "data"), fmt.Sprintf("tsa:\n  ntp_servers: [%q]\n  ntp_interval: 1h\n  accuracy: 1s\n", ntp.addr()))
	readyz := func() (int, string) {
		status, body := tn.get("http://"+tn.n.Addresses().HTTP+"/readyz", "")
		return status, string(body)
	}
	if status, body := readyz(); status != http.StatusServiceUnavailable || !strings.Contains(body, "time source lost") {
		t.Fatalf("readyz while no answer: %d %s", status, body)
	}
	ntp.drop.Store(false)
	waitReady := func(state string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			status, body := readyz()
			if status == http.StatusOK {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: readyz %d %s after %s", state, status, body, within)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitReady("answers again", 5*time.Second)
	// Healthy: the next poll is an hour away.
	n := ntp.requests.Load()
	time.Sleep(2500 * time.Millisecond)
	if m := ntp.requests.Load(); m != n {
		t.Fatalf("%d requests in 2.5 s while healthy, interval 1h", m-n)
	}
	// The server loses its reference (an unusable answer, asked once a
	// poll); a poll out of turn sees it, then the retries back off: polls
	// at 0, 1, 3 s, the next at 7 s.
	ntp.zeroRef.Store(true)
	n = ntp.requests.Load()
	tn.svc.clock.kick <- struct{}{}
	time.Sleep(6 * time.Second)
	if m := ntp.requests.Load() - n; m != 3 {
		t.Errorf("%d polls in 6 s of failure, want 3 (after 0, 1 and 3 s)", m)
	}
	if status, body := readyz(); status != http.StatusServiceUnavailable || !strings.Contains(body, "reference timestamp zero") {
		t.Fatalf("readyz while the server is unsynchronised: %d %s", status, body)
	}
	ntp.zeroRef.Store(false)
	waitReady("synchronised again", 4*time.Second)
}
