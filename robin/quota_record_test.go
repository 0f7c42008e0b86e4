package robin

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var quotaRecordCmp = cmp.AllowUnexported(quotaRecord{}, quotaSeries{}, quotaBucket{})

// quotaRecordEqual compares records without reflection (cmp is slow on
// thousands of buckets under the race detector); use cmp.Diff to explain.
func quotaRecordEqual(a, b quotaRecord) bool {
	return a.writtenAt == b.writtenAt && a.logHorizon == b.logHorizon && slices.Equal(a.log, b.log) &&
		slices.EqualFunc(a.series, b.series, func(x, y quotaSeries) bool {
			return x.width == y.width && x.horizon == y.horizon && slices.Equal(x.b, y.b)
		})
}

// quotaStateFor builds a record state for the windows, as NewQuota does.
func quotaStateFor(t testing.TB, windows string) quotaState {
	t.Helper()
	q := newTestQuota(t, QuotaOptions{Windows: mustQuotaWindows(t, windows)})
	return q.st
}

// quotaFillRandom records requests at random instants from start on, as
// the limiter allows them, and returns the instants recorded.
func quotaFillRandom(st *quotaState, rng *rand.Rand, start int64, n int) []int64 {
	now := start
	var out []int64
	for range n {
		now += int64(rng.ExpFloat64() * float64(time.Second))
		st.advance(now)
		if r := st.readyAt(now, PriorityPresence, 0, false); r > now {
			now = r
			st.advance(now)
		}
		out = append(out, st.add(now))
	}
	return out
}

func TestQuotaRecordRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	st := quotaStateFor(t, DefaultWindows)
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	quotaFillRandom(&st, rng, start, 30000)
	now := st.at
	data := st.encode(nil, now)
	rec, err := decodeQuotaRecord(data)
	if err != nil {
		t.Fatal(err)
	}
	want := quotaRecord{writtenAt: now, logHorizon: st.logHorizon, log: st.log, series: st.series}
	if !quotaRecordEqual(want, rec) {
		t.Fatalf("decoded record (-want +got):\n%s", cmp.Diff(want, rec, quotaRecordCmp))
	}
	loaded := quotaStateFor(t, DefaultWindows)
	loaded.load(rec, now)
	for i := range st.wins {
		if st.used(i) != loaded.used(i) {
			t.Errorf("window %d: %d used before, %d after loading", i, st.used(i), loaded.used(i))
		}
	}
	for _, p := range []Priority{PriorityPresence, PriorityNormal} {
		if a, b := st.readyAt(now, p, 0, false), loaded.readyAt(now, p, 0, false); a != b {
			t.Errorf("%v ready at %v before, %v after loading", p, a-now, b-now)
		}
	}
	t.Logf("record of %d requests in the last day: %d bytes", st.used(3), len(data))
}

// TestQuotaRecordLayoutChange: a record written under other windows is
// rebuilt so that every window counts at least the requests an exact log
// counts, while the windows the record covered lose little.
func TestQuotaRecordLayoutChange(t *testing.T) {
	layouts := []string{
		"2/1s,30/2m,200/10m",
		"2/1s,5/3s,30/2m,200/10m,100/5m",
		"3/1s,20/10s",
		DefaultWindows,
		"5/1s,900/30m",
	}
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for i, from := range layouts {
		for j, to := range layouts {
			rng := rand.New(rand.NewPCG(uint64(i), uint64(j)))
			st := quotaStateFor(t, from)
			starts := quotaFillRandom(&st, rng, start, 2000)
			now := st.at + int64(rng.ExpFloat64()*float64(time.Second))
			st.advance(now)
			rec, err := decodeQuotaRecord(st.encode(nil, now))
			if err != nil {
				t.Fatal(err)
			}
			next := quotaStateFor(t, to)
			next.load(rec, now)
			// Windows up to the longest the old record covered.
			covered := max(st.logHorizon, 0)
			for _, s := range st.series {
				covered = max(covered, s.horizon)
			}
			for k, w := range next.wins {
				if w.per > covered {
					continue
				}
				exact := 0
				for _, s := range starts {
					if s > now-w.per {
						exact++
					}
				}
				if got := next.used(k); got < exact {
					t.Errorf("%s -> %s: window %v counts %d, exact %d", from, to, time.Duration(w.per), got, exact)
				} else if got > exact+exact/10+5 {
					t.Errorf("%s -> %s: window %v counts %d, exact %d: too pessimistic", from, to, time.Duration(w.per), got, exact)
				}
			}
		}
	}
}

func TestQuotaRecordRejects(t *testing.T) {
	valid := func() []byte {
		st := quotaStateFor(t, "2/1s,100/1h")
		st.advance(int64(time.Hour))
		st.add(int64(time.Hour))
		st.add(int64(time.Hour))
		return st.encode(nil, int64(time.Hour))
	}
	if _, err := decodeQuotaRecord(valid()); err != nil {
		t.Fatalf("valid record: %v", err)
	}
	uv := func(vs ...uint64) []byte {
		b := []byte{quotaRecordVersion}
		for _, v := range vs {
			b = binary.AppendUvarint(b, v)
		}
		return b
	}
	tests := []struct {
		name    string
		data    []byte
		mention string
	}{
		{"version", append([]byte{9}, valid()[1:]...), "version 9"},
		{"truncated", valid()[:len(valid())-1], "truncated"},
		{"trailing", append(valid(), 0), "trailing"},
		{"log too long", uv(1, 1, 1000), "log length"},
		{"zero width", uv(1, 0, 0, 1, 0, 5, 0), "zero width"},
		{"huge count", uv(1, 0, 0, 1, 1, 1, 1, 0, 1, 1<<40), "bucket count"},
		{"empty run", uv(1, 0, 0, 1, 1, 1, 1, 0, 0), "run length"},
		{"index overflow", uv(1, 0, 0, 1, 1000, 1000, 1, 1<<61, 1, 1), "run start"},
		{"two series of one width", uv(1, 0, 0, 2, 5, 5, 0, 5, 9, 0), "two series"},
		{"time overflow", uv(1<<63, 0, 0, 0), "write time"},
	}
	for _, tc := range tests {
		_, err := decodeQuotaRecord(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.mention)
		}
	}
	// A Quota refuses to start on a record it cannot read.
	store := &quotaMemStore{data: []byte{9, 9}, rev: 3}
	if _, err := NewQuota(context.Background(), QuotaOptions{Store: store}); err == nil || !strings.Contains(err.Error(), "revision 3") {
		t.Errorf("NewQuota on a corrupt record: %v", err)
	}
}

// FuzzQuotaRecord: the decoder never panics or over-allocates on stored
// bytes, and whatever it accepts survives loading, deciding and encoding.
func FuzzQuotaRecord(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, w := range []string{DefaultWindows, "2/1s,5/3s,30/2m,200/10m,100/5m"} {
		st := quotaStateFor(f, w)
		quotaFillRandom(&st, rng, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano(), 300)
		f.Add(st.encode(nil, st.at))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := decodeQuotaRecord(data)
		if err != nil {
			return
		}
		// Re-encoding what was decoded gives the same record.
		again := quotaState{log: rec.log, logHorizon: rec.logHorizon, series: rec.series}
		rec2, err := decodeQuotaRecord(again.encode(nil, rec.writtenAt))
		if err != nil {
			t.Fatalf("re-encoded record rejected: %v", err)
		}
		if len(data) > 0 && !quotaRecordEqual(rec, rec2) {
			t.Fatalf("re-encoded record differs:\n%s", cmp.Diff(rec, rec2, quotaRecordCmp))
		}
		for _, w := range []string{DefaultWindows, "2/1s,5/3s,30/2m,200/10m,100/5m"} {
			st := quotaStateFor(t, w)
			now := rec.writtenAt
			st.load(rec, now)
			st.readyAt(now, PriorityNormal, 0, false)
			st.add(now)
			out := st.encode(nil, now)
			if _, err := decodeQuotaRecord(out); err != nil {
				t.Fatalf("record rebuilt for %s rejected: %v", w, err)
			}
		}
	})
}

// TestQuotaRecordRemove: a failed write's request is taken back exactly,
// also after the windows moved on while the write was under way.
func TestQuotaRecordRemove(t *testing.T) {
	st := quotaStateFor(t, "2/1s,100/1h")
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	st.advance(base)
	st.add(base)
	before := st.encode(nil, base)
	at := st.add(base)
	st.remove(at)
	if after := st.encode(nil, base); !bytes.Equal(before, after) {
		t.Errorf("record after add and remove differs")
	}
	// The write outlived the second window: advance passed the request
	// before it was taken back.
	at = st.add(base + int64(500*time.Millisecond))
	st.advance(base + int64(2*time.Second))
	st.remove(at)
	st.advance(base + int64(2*time.Second))
	if got := []int{st.used(0), st.used(1)}; !slices.Equal(got, []int{0, 1}) {
		t.Errorf("used %v after taking back a request, want [0 1]", got)
	}
}
