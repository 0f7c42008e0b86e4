package robin

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// The compact exact record: windows of up to a minute (with a limit small
// enough to log) keep every start time; longer windows count starts in
// buckets of 1/3600 of the window (one second for an hour, 24 s for a day).
// A bucket counts in full while any part of it is inside a window, so the
// record can only make the Quota admit later than an exact log would, by at
// most one bucket per time the window fills, never earlier. A full day at
// ROBIN's limits is about 180 log entries and 2 x 3600 buckets, a few
// kilobytes encoded: small enough to write before every request.
const (
	quotaExactMaxPer      = int64(time.Minute)
	quotaExactMaxLimit    = 1000
	quotaBucketsPerWindow = 3600

	quotaRecordVersion = 1
	// quotaMaxTime bounds every decoded instant and width so that
	// instant + window arithmetic cannot overflow.
	quotaMaxTime = int64(1) << 62
	// quotaMaxLog bounds the log rebuilt from a record of another layout.
	quotaMaxLog = 1 << 20
	// quotaMaxCount bounds one bucket's count in a decoded record.
	quotaMaxCount = 1 << 30
	// quotaMaxSeries bounds the bucket series in a decoded record (one per
	// distinct long window).
	quotaMaxSeries = 64
)

// quotaWinSpec is one window with its limits in effect.
type quotaWinSpec struct {
	per   int64 // nanoseconds
	limit int   // as configured, before Share
	lim   int   // for presence: floor(limit*share), at least 1
	norm  int   // for everything else: floor(lim*(1-reserve)), at least 1
}

// quotaWin is a window plus its cursor into the log or its bucket series.
type quotaWin struct {
	quotaWinSpec
	series int // index into quotaState.series; -1 for the exact log
	first  int // first log entry or bucket the window still counts
	sum    int // bucketed windows: requests in buckets from first on
}

type quotaBucket struct {
	idx int64 // covers [idx*width, (idx+1)*width) in Unix nanoseconds
	n   uint32
}

type quotaSeries struct {
	width   int64 // nanoseconds
	horizon int64 // longest window counted in this series
	b       []quotaBucket
}

// quotaState is the in-memory record and the windows' cursors into it.
// Counting has no upper bound in time: an entry recorded "in the future" by
// a process whose clock runs ahead counts at once and leaves late.
type quotaState struct {
	log        []int64 // start instants, Unix nanoseconds, ascending
	logHorizon int64   // longest exact window; 0 when there is none
	series     []quotaSeries
	wins       []quotaWin
	at         int64 // instant the cursors are valid for
	valid      bool
}

// quotaRecord is a decoded stored record.
type quotaRecord struct {
	writtenAt  int64
	logHorizon int64
	log        []int64
	series     []quotaSeries
}

func newQuotaState(specs []quotaWinSpec) quotaState {
	st := quotaState{wins: make([]quotaWin, len(specs))}
	for i, s := range specs {
		w := quotaWin{quotaWinSpec: s, series: -1}
		if s.per <= quotaExactMaxPer && s.limit <= quotaExactMaxLimit {
			st.logHorizon = max(st.logHorizon, s.per)
		} else {
			width := max(s.per/quotaBucketsPerWindow, 1)
			w.series = slices.IndexFunc(st.series, func(x quotaSeries) bool { return x.width == width })
			if w.series < 0 {
				w.series = len(st.series)
				st.series = append(st.series, quotaSeries{width: width})
			}
			st.series[w.series].horizon = max(st.series[w.series].horizon, s.per)
		}
		st.wins[i] = w
	}
	return st
}

// advance moves every window's cursor to now and drops what no window
// counts any more. If the clock went backwards the cursors restart.
func (st *quotaState) advance(now int64) {
	if !st.valid || now < st.at {
		for i := range st.wins {
			w := &st.wins[i]
			w.first, w.sum = 0, 0
			if w.series >= 0 {
				for _, b := range st.series[w.series].b {
					w.sum += int(b.n)
				}
			}
		}
		st.valid = true
	}
	st.at = now
	for i := range st.wins {
		w := &st.wins[i]
		cut := now - w.per
		if w.series < 0 {
			for w.first < len(st.log) && st.log[w.first] <= cut {
				w.first++
			}
			continue
		}
		s := &st.series[w.series]
		for w.first < len(s.b) && (s.b[w.first].idx+1)*s.width <= cut {
			w.sum -= int(s.b[w.first].n)
			w.first++
		}
	}
	st.prune()
}

// prune drops the log entries and buckets that every window has passed.
func (st *quotaState) prune() {
	k := len(st.log)
	for i := range st.wins {
		if st.wins[i].series < 0 {
			k = min(k, st.wins[i].first)
		}
	}
	if k > 0 {
		st.log = st.log[k:]
		for i := range st.wins {
			if st.wins[i].series < 0 {
				st.wins[i].first -= k
			}
		}
	}
	for si := range st.series {
		s := &st.series[si]
		k := len(s.b)
		for i := range st.wins {
			if st.wins[i].series == si {
				k = min(k, st.wins[i].first)
			}
		}
		if k > 0 {
			s.b = s.b[k:]
			for i := range st.wins {
				if st.wins[i].series == si {
					st.wins[i].first -= k
				}
			}
		}
	}
}

// used returns how many recorded requests window i counts (after advance).
func (st *quotaState) used(i int) int {
	w := &st.wins[i]
	if w.series < 0 {
		return len(st.log) - w.first
	}
	return w.sum
}

// readyAt returns the earliest instant, not before now, at which every
// window has room for one more request of priority p (after advance), with
// busy requests in flight. A request in flight occupies a place in every
// window until its answer arrives, so when busy requests fill a window
// readyAt returns quotaNever (the next release decides) or, with estimate,
// the instant the window would have room if they were answered now.
func (st *quotaState) readyAt(now int64, p Priority, busy int, estimate bool) int64 {
	ready := now
	for i := range st.wins {
		w := &st.wins[i]
		limit := w.norm
		if p == PriorityPresence {
			limit = w.lim
		}
		if busy >= limit {
			if !estimate {
				return quotaNever
			}
			ready = max(ready, now+w.per)
			continue
		}
		limit -= busy
		if w.series < 0 {
			c := len(st.log) - w.first
			if c >= limit {
				// The window has room once its c-limit+1 oldest entries left.
				ready = max(ready, st.log[w.first+c-limit]+w.per)
			}
			continue
		}
		if w.sum >= limit {
			s := &st.series[w.series]
			drop := w.sum - limit + 1
			for j := w.first; j < len(s.b); j++ {
				drop -= int(s.b[j].n)
				if drop <= 0 {
					ready = max(ready, (s.b[j].idx+1)*s.width+w.per)
					break
				}
			}
		}
	}
	return ready
}

// quotaNever is readyAt's answer when only the answer of a request in
// flight can make room.
const quotaNever = int64(math.MaxInt64)

// add records one request at now (after advance) and returns the instant
// recorded: now, or the newest recorded instant if that is later, so the
// record stays in order when the clock steps back or another process's
// clock runs ahead.
func (st *quotaState) add(now int64) int64 {
	t := now
	if n := len(st.log); n > 0 {
		t = max(t, st.log[n-1])
	}
	for _, s := range st.series {
		if n := len(s.b); n > 0 {
			t = max(t, s.b[n-1].idx*s.width)
		}
	}
	if st.logHorizon > 0 {
		st.log = append(st.log, t)
	}
	for si := range st.series {
		s := &st.series[si]
		idx := t / s.width
		if n := len(s.b); n > 0 && s.b[n-1].idx == idx {
			s.b[n-1].n++
		} else {
			s.b = append(s.b, quotaBucket{idx: idx, n: 1})
		}
	}
	for i := range st.wins {
		if st.wins[i].series >= 0 {
			st.wins[i].sum++
		}
	}
	return t
}

// remove takes back the request add recorded at t, after a failed store
// write. Only that request can be newest: adds are serialised. If the
// windows have already passed it, it is gone and nothing changes.
func (st *quotaState) remove(t int64) {
	if n := len(st.log); st.logHorizon > 0 && n > 0 && st.log[n-1] == t {
		st.log = st.log[:n-1]
		for i := range st.wins {
			if st.wins[i].series < 0 {
				st.wins[i].first = min(st.wins[i].first, n-1)
			}
		}
	}
	for si := range st.series {
		s := &st.series[si]
		j := len(s.b) - 1
		if j < 0 || s.b[j].idx != t/s.width {
			continue
		}
		for i := range st.wins {
			if w := &st.wins[i]; w.series == si && w.first <= j {
				w.sum--
			}
		}
		s.b[j].n--
		if s.b[j].n == 0 {
			s.b = s.b[:j]
			for i := range st.wins {
				if w := &st.wins[i]; w.series == si {
					w.first = min(w.first, j)
				}
			}
		}
	}
}

// removeAt takes back one request recorded at t, wherever it is in the
// record (a request of this process's in flight, found in a reloaded
// record). A request the windows have passed is gone already.
func (st *quotaState) removeAt(t int64) {
	if st.logHorizon > 0 {
		if i, ok := slices.BinarySearch(st.log, t); ok {
			st.log = slices.Delete(st.log, i, i+1)
			for k := range st.wins {
				if w := &st.wins[k]; w.series < 0 && w.first > i {
					w.first--
				}
			}
		}
	}
	for si := range st.series {
		s := &st.series[si]
		idx := t / s.width
		j, ok := slices.BinarySearchFunc(s.b, idx, func(b quotaBucket, idx int64) int { return cmp.Compare(b.idx, idx) })
		if !ok || s.b[j].n == 0 {
			continue
		}
		for k := range st.wins {
			if w := &st.wins[k]; w.series == si && w.first <= j {
				w.sum--
			}
		}
		s.b[j].n--
		if s.b[j].n == 0 {
			s.b = slices.Delete(s.b, j, j+1)
			for k := range st.wins {
				if w := &st.wins[k]; w.series == si && w.first > j {
					w.first--
				}
			}
		}
	}
}

// load replaces the record with a stored one. When the stored record has
// the same layout (the usual case: every process uses the same windows) it
// is taken as it is. Otherwise each part is rebuilt from the most precise
// stored data that covers it, moving bucketed requests to the end of their
// bucket, which can only make them count longer. Time a stored record never
// covered (a window longer than any its writer had) counts as empty.
func (st *quotaState) load(rec quotaRecord, now int64) {
	var items []quotaItem
	itemsDone := false
	getItems := func() []quotaItem {
		if !itemsDone {
			items, itemsDone = rec.items(), true
		}
		return items
	}
	st.log = nil
	if st.logHorizon > 0 {
		if rec.logHorizon >= st.logHorizon {
			st.log = slices.Clone(rec.log)
		} else {
			st.log = expandQuotaItems(getItems(), now-st.logHorizon)
		}
	}
	for si := range st.series {
		s := &st.series[si]
		s.b = nil
		j := slices.IndexFunc(rec.series, func(x quotaSeries) bool {
			return x.width == s.width && x.horizon >= s.horizon
		})
		if j >= 0 {
			s.b = slices.Clone(rec.series[j].b)
		} else {
			s.b = bucketQuotaItems(getItems(), s.width, now-s.horizon)
		}
	}
	st.valid = false
	st.advance(now)
}

// quotaItem is n requests counted at instant t.
type quotaItem struct {
	t int64
	n uint32
}

// items flattens a record into requests at conservative instants, taking
// each stretch of time from the most precise source that covers it: the
// log, then series from the finest. A bucket straddling the edge of a more
// precise source counts in full, which double counts a few requests rather
// than losing any.
func (rec quotaRecord) items() []quotaItem {
	var out []quotaItem
	edge := int64(math.MaxInt64) // everything at or after edge is covered
	if rec.logHorizon > 0 {
		for _, t := range rec.log {
			out = append(out, quotaItem{t: t, n: 1})
		}
		edge = rec.writtenAt - rec.logHorizon
	}
	order := make([]int, len(rec.series))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Compare(rec.series[a].width, rec.series[b].width)
	})
	for _, i := range order {
		s := rec.series[i]
		start := rec.writtenAt - s.horizon
		if start >= edge {
			continue
		}
		for _, b := range s.b {
			if b.idx*s.width < edge {
				out = append(out, quotaItem{t: (b.idx+1)*s.width - 1, n: b.n})
			}
		}
		edge = start
	}
	slices.SortFunc(out, func(a, b quotaItem) int { return cmp.Compare(a.t, b.t) })
	return out
}

// expandQuotaItems builds a log of the requests after from, keeping at most
// the newest quotaMaxLog (more than any window may hold).
func expandQuotaItems(items []quotaItem, from int64) []int64 {
	total := 0
	for _, it := range items {
		if it.t > from {
			total += int(it.n)
		}
	}
	skip := max(total-quotaMaxLog, 0)
	out := make([]int64, 0, total-skip)
	for _, it := range items {
		n := int(it.n)
		if it.t <= from || n <= skip {
			if it.t > from {
				skip -= n
			}
			continue
		}
		n, skip = n-skip, 0
		for range n {
			out = append(out, it.t)
		}
	}
	return out
}

// bucketQuotaItems builds a series of the given width from the requests in
// buckets that end after from.
func bucketQuotaItems(items []quotaItem, width, from int64) []quotaBucket {
	var out []quotaBucket
	for _, it := range items {
		idx := it.t / width
		if (idx+1)*width <= from {
			continue
		}
		if n := len(out); n > 0 && out[n-1].idx == idx {
			out[n-1].n = uint32(min(uint64(out[n-1].n)+uint64(it.n), quotaMaxCount))
			continue
		}
		out = append(out, quotaBucket{idx: idx, n: it.n})
	}
	return out
}

// Encoding, all integers as (u)varints:
//
//	version(=1) writtenAt logHorizon
//	nLog [first delta...]                      ascending instants
//	nSeries { width horizon nRuns { gap len count... } }
//
// A run is a stretch of consecutive non-empty buckets; the first run's gap
// is its first index, later gaps count the empty buckets since the
// previous run.

// encode appends the record (after advance) to buf; with a nil buf it
// allocates once, for the typical size.
func (st *quotaState) encode(buf []byte, now int64) []byte {
	if buf == nil {
		size := 32 + 6*len(st.log)
		for _, s := range st.series {
			size += 24 + 2*len(s.b)
		}
		buf = make([]byte, 0, size)
	}
	buf = append(buf, quotaRecordVersion)
	buf = binary.AppendUvarint(buf, uint64(max(now, 0)))
	buf = binary.AppendUvarint(buf, uint64(st.logHorizon))
	buf = binary.AppendUvarint(buf, uint64(len(st.log)))
	prev := int64(0)
	for _, t := range st.log {
		buf = binary.AppendUvarint(buf, uint64(t-prev))
		prev = t
	}
	buf = binary.AppendUvarint(buf, uint64(len(st.series)))
	for _, s := range st.series {
		buf = binary.AppendUvarint(buf, uint64(s.width))
		buf = binary.AppendUvarint(buf, uint64(s.horizon))
		buf = appendQuotaRuns(buf, s.b)
	}
	return buf
}

func appendQuotaRuns(buf []byte, bs []quotaBucket) []byte {
	runs := 0
	next := int64(-1) // index that would continue the current run
	for _, b := range bs {
		if b.n == 0 {
			continue
		}
		if b.idx != next {
			runs++
		}
		next = b.idx + 1
	}
	buf = binary.AppendUvarint(buf, uint64(runs))
	end := int64(0) // one past the previous run
	for i := 0; i < len(bs); {
		if bs[i].n == 0 {
			i++
			continue
		}
		j := i + 1
		for j < len(bs) && bs[j].n != 0 && bs[j].idx == bs[j-1].idx+1 {
			j++
		}
		buf = binary.AppendUvarint(buf, uint64(bs[i].idx-end))
		buf = binary.AppendUvarint(buf, uint64(j-i))
		for _, b := range bs[i:j] {
			buf = binary.AppendUvarint(buf, uint64(b.n))
		}
		end = bs[j-1].idx + 1
		i = j
	}
	return buf
}

var errQuotaRecordShort = errors.New("record truncated")

type quotaDecoder struct {
	b   []byte
	err error
}

func (d *quotaDecoder) uvarint(limit uint64, what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%s: %w", what, errQuotaRecordShort)
		return 0
	}
	d.b = d.b[n:]
	if v > limit {
		d.err = fmt.Errorf("%s %d out of range", what, v)
		return 0
	}
	return v
}

// decodeQuotaRecord parses a stored record; nil or empty data is an empty
// record. It rejects anything it does not fully understand rather than
// guessing: admitting on a misread record could exceed the quota.
func decodeQuotaRecord(data []byte) (quotaRecord, error) {
	var rec quotaRecord
	if len(data) == 0 {
		return rec, nil
	}
	if data[0] != quotaRecordVersion {
		return rec, fmt.Errorf("unknown quota record version %d", data[0])
	}
	d := &quotaDecoder{b: data[1:]}
	rec.writtenAt = int64(d.uvarint(uint64(quotaMaxTime), "write time"))
	rec.logHorizon = int64(d.uvarint(uint64(quotaMaxPer), "log horizon"))
	nLog := d.uvarint(uint64(len(d.b)), "log length")
	if nLog > 0 {
		rec.log = make([]int64, 0, nLog)
	}
	t := int64(0)
	for range nLog {
		t += int64(d.uvarint(uint64(quotaMaxTime-t), "log instant"))
		rec.log = append(rec.log, t)
	}
	nSeries := d.uvarint(quotaMaxSeries, "series count")
	for range nSeries {
		var s quotaSeries
		s.width = int64(d.uvarint(uint64(quotaMaxPer), "bucket width"))
		s.horizon = int64(d.uvarint(uint64(quotaMaxPer), "series horizon"))
		if d.err == nil && (s.width == 0 || s.horizon == 0) {
			d.err = errors.New("series with zero width or horizon")
		}
		nRuns := d.uvarint(uint64(len(d.b)), "run count")
		end := int64(0)
		for range nRuns {
			maxIdx := uint64(0)
			if d.err == nil {
				maxIdx = uint64(quotaMaxTime/s.width - end)
			}
			start := end + int64(d.uvarint(maxIdx, "run start"))
			n := d.uvarint(uint64(len(d.b)), "run length")
			if d.err == nil && (n == 0 || uint64(quotaMaxTime/s.width-start) < n) {
				d.err = fmt.Errorf("run length %d out of range", n)
			}
			for k := range n {
				c := d.uvarint(quotaMaxCount, "bucket count")
				if d.err != nil {
					break
				}
				if c == 0 {
					continue
				}
				s.b = append(s.b, quotaBucket{idx: start + int64(k), n: uint32(c)})
			}
			end = start + int64(n)
		}
		if d.err != nil {
			break
		}
		if slices.ContainsFunc(rec.series, func(x quotaSeries) bool { return x.width == s.width }) {
			d.err = fmt.Errorf("two series of width %d", s.width)
			break
		}
		rec.series = append(rec.series, s)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d bytes of trailing data", len(d.b))
	}
	if d.err != nil {
		return quotaRecord{}, fmt.Errorf("decode quota record: %w", d.err)
	}
	return rec, nil
}
