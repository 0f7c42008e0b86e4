package board

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// The parts of the board, each built, encoded and sent on its own: the
// calls change with every call, the events with every event and delivery,
// health every few seconds.
const (
	partCalls = iota
	partEvents
	partHealth
	nParts
)

var partNames = [nParts]string{"calls", "events", "health"}

// publisher builds the board's parts while someone watches and shares the
// encoded bytes among every open stream: the cost of a change is one build
// and one encoding, however many boards are open.
type publisher struct {
	b       *Board
	buildMu sync.Mutex // one build at a time (the builder and polls)

	mu        sync.Mutex
	data      [nParts][]byte
	vers      [nParts]uint64
	changed   chan struct{} // closed and replaced when a part changes
	viewers   int           // open streams; the builder runs while > 0
	stop      chan struct{} // closed to stop the builder
	deadTotal uint64        // dead letters waiting, from the last health

	// The calls and the events change a row at a time: streams get what
	// changed (deltas[part][v%deltaRing] takes version v-1 to v), and a
	// whole part only when they open or fall further behind than the ring.
	rows   [nParts]map[string][]byte // key to the row as last published
	deltas [nParts][deltaRing]delta
}

// deltaRing is how many versions of a part a stream may fall behind and
// still be sent only what changed.
const deltaRing = 64

type delta struct {
	ver  uint64
	data []byte
}

// Delta takes the calls or the events part from one version to the next:
// the part's figures as a whole (Meta), the rows that are new or changed,
// and the keys of the rows gone.
type Delta struct {
	Meta   any               `json:"meta"`
	Upsert []json.RawMessage `json:"upsert"`
	Remove []string          `json:"remove"`
}

// callsMeta and eventsMeta are the calls and events parts without rows.
type callsMeta struct {
	Total    int            `json:"total"`
	Hidden   int            `json:"hidden"`
	ByState  map[string]int `json:"by_state"`
	Masked   bool           `json:"masked,omitempty"`
	MaxCalls int            `json:"max_calls"`
}

type eventsMeta struct {
	DeadLetters []DeadLetterRow `json:"dead_letters"`
	DeadTotal   uint64          `json:"dead_total"`
}

// rowsOf returns a part's figures and its rows by key, for the parts that
// are sent as deltas.
func rowsOf(part any) (meta any, rows map[string][]byte, ok bool) {
	switch v := part.(type) {
	case Calls:
		rows = make(map[string][]byte, len(v.Calls))
		for _, c := range v.Calls {
			rows[c.Key], _ = json.Marshal(c)
		}
		return callsMeta{v.Total, v.Hidden, v.ByState, v.Masked, v.MaxCalls}, rows, true
	case Events:
		rows = make(map[string][]byte, len(v.Events))
		for _, e := range v.Events {
			rows[e.Key], _ = json.Marshal(e)
		}
		return eventsMeta{v.DeadLetters, v.DeadTotal}, rows, true
	}
	return nil, nil, false
}

func newPublisher(b *Board) *publisher {
	return &publisher{b: b, changed: make(chan struct{})}
}

// join counts a viewer in; the first one starts the builder. It returns
// false when MaxStreams are open.
func (p *publisher) join() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.viewers >= p.b.o.MaxStreams {
		return false
	}
	p.viewers++
	if p.viewers == 1 {
		p.stop = make(chan struct{})
		go p.run(p.stop)
	}
	return true
}

// leave counts a viewer out; the last one stops the builder.
func (p *publisher) leave() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.viewers--
	if p.viewers == 0 {
		close(p.stop)
	}
}

// publish encodes the parts built (nil: not built) and publishes those
// that differ from what was sent, all at once, so a stream wakes once.
func (p *publisher) publish(parts [nParts]any) {
	var data [nParts][]byte
	for i, v := range parts {
		if v == nil {
			continue
		}
		var err error
		if data[i], err = json.Marshal(v); err != nil {
			p.b.log.Error("board: encoding", "part", partNames[i], "err", err)
		}
	}
	var rows [nParts]map[string][]byte
	var deltas [nParts][]byte
	for i, v := range parts {
		meta, r, ok := rowsOf(v)
		if !ok {
			continue
		}
		d := Delta{Meta: meta, Upsert: []json.RawMessage{}, Remove: []string{}}
		p.mu.Lock()
		for k, row := range r {
			if !bytes.Equal(row, p.rows[i][k]) {
				d.Upsert = append(d.Upsert, row)
			}
		}
		for k := range p.rows[i] {
			if _, ok := r[k]; !ok {
				d.Remove = append(d.Remove, k)
			}
		}
		p.mu.Unlock()
		rows[i] = r
		deltas[i], _ = json.Marshal(d)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := false
	for i, d := range data {
		if d == nil || bytes.Equal(d, p.data[i]) {
			continue
		}
		p.data[i] = d
		p.vers[i]++
		changed = true
		if rows[i] != nil {
			p.rows[i] = rows[i]
			p.deltas[i][p.vers[i]%deltaRing] = delta{ver: p.vers[i], data: deltas[i]}
		}
	}
	if changed {
		close(p.changed)
		p.changed = make(chan struct{})
	}
}

// current returns the parts as last published and the channel closed at the
// next change.
func (p *publisher) current() (data [nParts][]byte, vers [nParts]uint64, changed <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.data, p.vers, p.changed
}

// build builds the parts in want; it returns the live view's change
// channel and when the next ended call leaves the board, for the calls.
func (p *publisher) build(want [nParts]bool, watching bool) (live <-chan struct{}, nextEnd time.Time) {
	p.buildMu.Lock()
	defer p.buildMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var parts [nParts]any
	if want[partHealth] {
		h := p.b.buildHealth(ctx)
		p.mu.Lock()
		p.deadTotal = h.Health.DeadLetters
		p.mu.Unlock()
		parts[partHealth] = h
	}
	if want[partEvents] {
		p.mu.Lock()
		dead := p.deadTotal
		p.mu.Unlock()
		parts[partEvents] = p.b.buildEvents(ctx, dead, false)
	}
	if want[partCalls] {
		var c Calls
		c, live, nextEnd = p.b.buildCalls(watching)
		parts[partCalls] = c
	}
	p.publish(parts)
	return live, nextEnd
}

// deltasOf returns what takes part i from version from to version to, if
// the ring still holds all of it.
func (p *publisher) deltasOf(i int, from, to uint64) ([][]byte, bool) {
	if to-from > deltaRing {
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][]byte
	for v := from + 1; v <= to; v++ {
		d := p.deltas[i][v%deltaRing]
		if d.ver != v {
			return nil, false
		}
		out = append(out, d.data)
	}
	return out, true
}

// snapshot returns every part: as published while the builder runs, else
// built now (a browser that polls).
func (p *publisher) snapshot() [nParts][]byte {
	p.mu.Lock()
	running := p.viewers > 0
	p.mu.Unlock()
	data, _, _ := p.current()
	if running && data[partCalls] != nil && data[partEvents] != nil && data[partHealth] != nil {
		return data
	}
	p.build([nParts]bool{true, true, true}, false)
	data, _, _ = p.current()
	return data
}

// run builds parts as their sources change, each at most once per
// MinInterval, until stop is closed.
func (p *publisher) run(stop <-chan struct{}) {
	o := p.b.o
	health := time.NewTicker(o.HealthEvery)
	defer health.Stop()
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	var (
		dirty   = [nParts]bool{true, true, true}
		last    [nParts]time.Time
		live    <-chan struct{}
		rows    <-chan struct{}
		nextEnd time.Time
		watched bool // the live view's changes since the first build
	)
	for {
		now := time.Now()
		var want [nParts]bool
		due := false
		next := time.Time{}
		for i := range nParts {
			if !dirty[i] {
				continue
			}
			if at := last[i].Add(o.MinInterval); !now.Before(at) {
				want[i], due = true, true
			} else if next.IsZero() || at.Before(next) {
				next = at
			}
		}
		if !nextEnd.IsZero() && (next.IsZero() || nextEnd.Before(next)) {
			next = nextEnd
		}
		if due {
			if want[partEvents] {
				p.b.mu.Lock()
				rows = p.b.changed
				p.b.mu.Unlock()
			}
			// The first build of a run has not seen the changes before it.
			l, ne := p.build(want, watched)
			if want[partCalls] {
				live, nextEnd, watched = l, ne, true
			}
			for i := range nParts {
				if want[i] {
					dirty[i], last[i] = false, now
				}
			}
			continue
		}
		if !next.IsZero() {
			wake.Reset(time.Until(next))
		}
		select {
		case <-stop:
			return
		case <-live:
			dirty[partCalls], live = true, nil
		case <-rows:
			dirty[partEvents], rows = true, nil
		case <-health.C:
			// Health and the chart move with time; so does why events
			// wait (quota, backoff).
			dirty[partHealth], dirty[partEvents] = true, true
		case <-wake.C:
			if !nextEnd.IsZero() && !time.Now().Before(nextEnd) {
				dirty[partCalls], nextEnd = true, time.Time{}
			}
		}
		wake.Stop()
	}
}

// viewerInfo is the stream's first message: who is watching, and the
// server's clock, from which the page counts call durations.
type viewerInfo struct {
	Admin  bool  `json:"admin"`
	Now    int64 `json:"now"` // Unix ms
	Masked bool  `json:"masked"`
}

// serveStream sends the board as Server-Sent Events: the viewer, then every
// part, then each part again when it changes; a comment every KeepAlive.
func (b *Board) serveStream(w http.ResponseWriter, r *http.Request, v viewer) {
	p := b.pub
	if !p.join() {
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusServiceUnavailable, "too many boards are open; poll GET /v1/board")
		return
	}
	defer p.leave()
	// net/http lifts the read deadline (HTTP_READ_TIMEOUT) once the
	// request is read; the write deadline is extended before every write.
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	var buf bytes.Buffer
	hello, _ := json.Marshal(viewerInfo{Admin: v.admin, Now: b.now().UnixMilli(), Masked: b.o.Mask})
	buf.WriteString("retry: 3000\nevent: viewer\ndata: ")
	buf.Write(hello)
	buf.WriteString("\n\n")
	// write sends buf within HTTP_WRITE_TIMEOUT from now: the server's
	// deadline ran from the request's start and would end the stream.
	write := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(b.o.WriteTimeout))
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		return err == nil && rc.Flush() == nil
	}
	keepAlive := time.NewTicker(b.o.KeepAlive)
	defer keepAlive.Stop()
	var sent [nParts]uint64
	for {
		data, vers, changed := p.current()
		for i := range nParts {
			if vers[i] == sent[i] || data[i] == nil {
				continue
			}
			if sent[i] > 0 {
				if deltas, ok := p.deltasOf(i, sent[i], vers[i]); ok {
					for _, d := range deltas {
						buf.WriteString("event: ")
						buf.WriteString(partNames[i])
						buf.WriteString("-delta\ndata: ")
						buf.Write(d)
						buf.WriteString("\n\n")
					}
					sent[i] = vers[i]
					continue
				}
			}
			buf.WriteString("event: ")
			buf.WriteString(partNames[i])
			buf.WriteString("\ndata: ")
			buf.Write(data[i])
			buf.WriteString("\n\n")
			sent[i] = vers[i]
		}
		if buf.Len() > 0 && !write() {
			return
		}
		select {
		case <-changed:
		case <-keepAlive.C:
			buf.WriteString(": keep-alive\n\n")
			if !write() {
				return
			}
		case <-r.Context().Done():
			return
		case <-b.o.Done:
			return
		}
	}
}

// serveSnapshot answers GET /v1/board: the viewer and every part in one
// JSON object, for browsers that cannot hold a stream open.
func (b *Board) serveSnapshot(w http.ResponseWriter, _ *http.Request, v viewer) {
	data := b.pub.snapshot()
	hello, _ := json.Marshal(viewerInfo{Admin: v.admin, Now: b.now().UnixMilli(), Masked: b.o.Mask})
	var buf bytes.Buffer
	buf.WriteString(`{"viewer":`)
	buf.Write(hello)
	for i := range nParts {
		buf.WriteString(`,"`)
		buf.WriteString(partNames[i])
		buf.WriteString(`":`)
		buf.Write(data[i])
	}
	buf.WriteString("}\n")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}
