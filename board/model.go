package board

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

// Delivery states of an event at one sink.
const (
	StateQueued    = "queued"    // waiting; Reason says why
	StateDelivered = "delivered" // accepted; Status and LatencyMS say how
	StateDead      = "dead"      // dead-lettered; Reason says why
)

// Delivery is what became of one event at one sink.
type Delivery struct {
	Sink  string `json:"sink"`
	State string `json:"state"`
	// Reason: for a queued event, why it waits ("queued", "sending",
	// "quota", "retrying", "breaker", "rate_limited", "auth", "replayed");
	// for a dead letter, the helpdesk's answer.
	Reason    string    `json:"reason,omitempty"`
	Status    int       `json:"status,omitempty"`
	LatencyMS float64   `json:"latency_ms,omitempty"` // of the last request
	AgeMS     float64   `json:"age_ms,omitempty"`     // journaled to this answer
	Attempts  int       `json:"attempts,omitempty"`
	Error     string    `json:"error,omitempty"`
	At        time.Time `json:"at,omitzero"`
	// DeadLetter is the id to replay a dead letter with, once it is stored.
	DeadLetter uint64 `json:"dead_letter,omitempty"`
}

// Call is a call on the board.
type Call struct {
	// Key identifies the call's row; it is no PBX identifier.
	Key       string `json:"key"`
	Source    string `json:"source"`
	CallID    string `json:"call_id"`
	Direction string `json:"direction"` // inbound, outbound or internal
	// Caller is the customer's number for reading (masked with
	// BOARD_MASK_NUMBERS), E164 the same in E.164 (never when masked).
	Caller    string   `json:"caller"`
	E164      string   `json:"e164,omitempty"`
	DID       string   `json:"did,omitempty"`
	DIDE164   string   `json:"did_e164,omitempty"`
	State     string   `json:"state"` // ringing, answered, ending or ended
	Agent     string   `json:"agent,omitempty"`
	AgentName string   `json:"agent_name,omitempty"`
	Exts      []string `json:"exts,omitempty"`
	Transfers int      `json:"transfers"`
	// Started and Ended are Unix milliseconds.
	Started int64 `json:"started"`
	Ended   int64 `json:"ended,omitempty"`
}

// Calls is the board's part about calls in progress.
type Calls struct {
	// Total counts the calls in progress; Calls holds at most MaxCalls of
	// them (the oldest) plus the calls that ended a moment ago, and Hidden
	// says how many are left out.
	Total    int            `json:"total"`
	Hidden   int            `json:"hidden"`
	ByState  map[string]int `json:"by_state"`
	Calls    []Call         `json:"calls"`
	Masked   bool           `json:"masked,omitempty"`
	MaxCalls int            `json:"max_calls"`
}

// Event is a recent event on the board.
type Event struct {
	// Key identifies the event's row (a digest of its journal id).
	Key string `json:"key"`
	// Seq orders the events as they were journaled.
	Seq       uint64     `json:"seq"`
	CallID    string     `json:"call_id"`
	Type      string     `json:"type"`
	Number    string     `json:"number"`
	E164      string     `json:"e164,omitempty"`
	Ext       string     `json:"ext,omitempty"`
	Direction string     `json:"direction"`
	Source    string     `json:"source"`
	At        int64      `json:"at"` // Unix milliseconds
	Sinks     []Delivery `json:"sinks"`
}

// DeadLetterRow is a dead letter waiting.
type DeadLetterRow struct {
	ID     uint64 `json:"id"`
	Sink   string `json:"sink"`
	CallID string `json:"call_id"`
	Type   string `json:"type"`
	Number string `json:"number"`
	Ext    string `json:"ext,omitempty"`
	Status int    `json:"status,omitempty"`
	Reason string `json:"reason"`
	At     int64  `json:"at"`
}

// Events is the board's part about recent events and dead letters.
type Events struct {
	Events      []Event         `json:"events"`
	DeadLetters []DeadLetterRow `json:"dead_letters"`
	// DeadTotal counts the dead letters waiting (DeadLetters shows at most
	// maxDeadShown).
	DeadTotal uint64 `json:"dead_total"`
}

// maxDeadShown bounds the dead letters listed; the board reads at most
// maxDeadRead to match recent events with their dead letter's id.
const (
	maxDeadShown = 20
	maxDeadRead  = 200
)

// Health is the state of the bridge's parts, as the bridge reports it
// (Feeds.Health).
type Health struct {
	// Intake: signals can be journaled.
	Intake  bool           `json:"intake"`
	Sources []SourceHealth `json:"sources"`
	Journal JournalHealth  `json:"journal"`
	Sinks   []SinkHealth   `json:"sinks"`
	Quota   []QuotaWindow  `json:"quota"`
	// DeadLetters counts the dead letters waiting.
	DeadLetters uint64 `json:"dead_letters"`
}

// SourceHealth is one PBX source.
type SourceHealth struct {
	Name string `json:"name"`
	// Kind: "connection" (it keeps a connection to the PBX),
	// "subscriptions" (SIP), or "webhook" (the PBX calls the bridge; there
	// is nothing to be up).
	Kind   string `json:"kind"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	// Since is when the source last changed between ok and not (Unix ms,
	// as far as this board has seen); LastSignal when it last sent a
	// signal (Unix ms; the board keeps the latest it was told).
	Since      int64 `json:"since,omitempty"`
	LastSignal int64 `json:"last_signal,omitempty"`
}

// JournalHealth is the journal and the tracker folding it.
type JournalHealth struct {
	Kind       string  `json:"kind"` // embedded or external
	OK         bool    `json:"ok"`
	Detail     string  `json:"detail,omitempty"`
	Tracker    string  `json:"tracker"` // "ok", or restoring / lagging with figures
	LagSignals uint64  `json:"lag_signals"`
	LagSeconds float64 `json:"lag_seconds"`
	// Pending counts the events journaled and not yet delivered.
	Pending   uint64 `json:"pending"`
	DiskFree  uint64 `json:"disk_free,omitempty"`
	DiskTotal uint64 `json:"disk_total,omitempty"`
}

// SinkHealth is one sink: its breaker and whether delivery is paused.
type SinkHealth struct {
	Name    string `json:"name"`
	State   string `json:"state"` // "ok", or why delivery is held back
	Breaker string `json:"breaker"`
	Paused  string `json:"paused,omitempty"`
	// Waiting counts the events held for delivery, by reason.
	Waiting map[string]int `json:"waiting"`
}

// QuotaWindow is one of the helpdesk's rolling windows.
type QuotaWindow struct {
	Window string `json:"window"` // "1s", "1m", "1h", "1d"
	Used   int    `json:"used"`
	Limit  int    `json:"limit"`
	// Reserve is the part of Limit only presence look-ups may use.
	Reserve int `json:"reserve"`
}

// HealthPart is the board's part about health and the chart.
type HealthPart struct {
	Health Health   `json:"health"`
	Chart  []Minute `json:"chart"`
}

// buildCalls reads the live view and renders the calls part; watching
// says the caller has seen every change of the live view since its last
// build. It returns
// the live view's change channel and when the next ended call leaves the
// board (zero: none).
func (b *Board) buildCalls(watching bool) (Calls, <-chan struct{}, time.Time) {
	live, changed := b.feeds.Live()
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := make(map[string]events.LiveCall, len(live))
	for _, c := range live {
		cur[c.Key] = c
	}
	// A call gone since the last build ended then, if the builder was
	// watching every change (or the last poll was a moment ago); else
	// that moment is unknown, and it just leaves.
	if watching || now.Sub(b.liveAt) < b.o.EndedFor {
		for k, c := range b.prevLive {
			if _, ok := cur[k]; !ok {
				b.ended = append(b.ended, endedCall{call: c, at: now})
			}
		}
	}
	b.prevLive, b.liveAt = cur, now
	kept := b.ended[:0]
	for _, e := range b.ended {
		if _, back := cur[e.call.Key]; !back && now.Sub(e.at) < b.o.EndedFor {
			kept = append(kept, e)
		}
	}
	b.ended = kept
	var next time.Time
	if len(b.ended) > 0 {
		next = b.ended[0].at.Add(b.o.EndedFor)
	}

	out := Calls{Total: len(live), ByState: map[string]int{}, Masked: b.o.Mask, MaxCalls: b.o.MaxCalls}
	for _, c := range live {
		out.ByState[c.State]++
	}
	shown := live[:min(len(live), b.o.MaxCalls)]
	out.Hidden = len(live) - len(shown)
	out.Calls = make([]Call, 0, len(shown)+len(b.ended))
	for _, c := range shown {
		out.Calls = append(out.Calls, b.callLocked(c, time.Time{}))
	}
	for _, e := range b.ended {
		out.Calls = append(out.Calls, b.callLocked(e.call, e.at))
	}
	return out, changed, next
}

func (b *Board) callLocked(c events.LiveCall, ended time.Time) Call {
	out := Call{
		Key: rowKey("call|" + c.Key), Source: c.Source, CallID: b.nums.scrubNumber(c.CallID, c.Customer),
		Direction: string(c.Direction), Caller: b.nums.show(c.Customer), E164: b.nums.e164(c.Customer),
		DID: b.nums.company(c.DID), DIDE164: c.DID, State: c.State, Agent: c.Agent, Exts: c.Extensions,
		Transfers: c.Transfers, Started: c.Started.UnixMilli(),
	}
	if c.Internal {
		out.Direction = "internal"
	}
	if c.Anonymous && out.Caller == "" {
		out.Caller = "anonymous"
	}
	if !ended.IsZero() {
		out.State, out.Ended = "ended", ended.UnixMilli()
	}
	if b.feeds.AgentName != nil && c.Agent != "" {
		for _, ext := range c.Extensions {
			if n := b.feeds.AgentName(c.Source, ext); n != "" {
				out.AgentName = n
				break
			}
		}
	}
	return out
}

// rowKey is a short, stable digest that names a row in the page without
// revealing what it was made from.
func rowKey(s string) string {
	h := fnv.New64a()
	h.Write([]byte(s))
	return strconv.FormatUint(h.Sum64(), 36)
}

// buildEvents renders the recent events with their state at each sink,
// reading why waiting events wait and, when something was dead-lettered or
// replayed, the dead letters.
func (b *Board) buildEvents(ctx context.Context, deadTotal uint64, refreshDead bool) Events {
	pending := map[string]events.PendingEvent{}
	if b.feeds.Pending != nil {
		for _, p := range b.feeds.Pending(0) {
			orig, _, _ := strings.Cut(p.Env.MsgID, "|replay|")
			pending[p.Sink+"|"+orig] = p
		}
	}
	b.mu.Lock()
	refreshDead = refreshDead || b.deadSeen || deadTotal != b.deadN
	b.deadSeen = false
	b.mu.Unlock()
	var dead []events.StoredDeadLetter
	if refreshDead && b.feeds.DeadLetters != nil {
		var err error
		if dead, err = b.feeds.DeadLetters(ctx, maxDeadRead); err != nil {
			b.log.Warn("board: reading dead letters", "err", err)
			refreshDead = false
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if refreshDead {
		b.dead = dead
	}
	b.deadN = deadTotal
	deadByMsg := make(map[string]events.StoredDeadLetter, len(b.dead))
	for _, dl := range b.dead {
		deadByMsg[sinkName(dl.Sink)+"|"+dl.Envelope.MsgID] = dl
	}
	out := Events{DeadTotal: max(deadTotal, uint64(len(b.dead)))}
	n := min(len(b.rows), b.o.MaxEvents)
	out.Events = make([]Event, 0, n)
	for i := len(b.rows) - 1; i >= len(b.rows)-n; i-- {
		r := b.rows[i]
		e := r.env.Event
		ev := Event{
			Key: rowKey(r.env.MsgID), Seq: r.seq, CallID: b.nums.scrubNumber(e.ID, e.PhoneNumber), Type: string(e.Type),
			Number: b.nums.show(e.PhoneNumber), E164: b.nums.e164(e.PhoneNumber), Ext: e.PhoneExtension,
			Direction: e.Direction, Source: r.env.Source, At: r.env.Created.UnixMilli(),
			Sinks: make([]Delivery, 0, len(r.sinks)),
		}
		for _, d := range r.sinks {
			if d.State == StateQueued {
				if p, ok := pending[d.Sink+"|"+r.env.MsgID]; ok {
					d.Reason, d.Attempts = p.Reason, max(d.Attempts, p.Attempts)
				}
			}
			if d.State == StateDead {
				d.DeadLetter = deadByMsg[d.Sink+"|"+r.env.MsgID].ID
			}
			ev.Sinks = append(ev.Sinks, d)
		}
		// Sinks beyond those the board is told about (Options.Sinks) show
		// while their event waits or once it is dead-lettered.
		for _, sink := range b.further {
			if r.sink(sink) != nil {
				continue
			}
			if p, ok := pending[sink+"|"+r.env.MsgID]; ok {
				ev.Sinks = append(ev.Sinks, Delivery{Sink: sink, State: StateQueued, Reason: p.Reason, Attempts: p.Attempts})
			} else if dl, ok := deadByMsg[sink+"|"+r.env.MsgID]; ok {
				ev.Sinks = append(ev.Sinks, Delivery{Sink: sink, State: StateDead, Status: dl.Status, Reason: dl.Reason + ": " + truncate(dl.Body, 200), DeadLetter: dl.ID, At: dl.Time})
			}
		}
		for j := range ev.Sinks {
			ev.Sinks[j].Reason, ev.Sinks[j].Error = b.nums.scrub(ev.Sinks[j].Reason), b.nums.scrub(ev.Sinks[j].Error)
		}
		out.Events = append(out.Events, ev)
	}
	shown := b.dead
	if len(shown) > maxDeadShown {
		shown = shown[len(shown)-maxDeadShown:] // the newest
	}
	out.DeadLetters = make([]DeadLetterRow, 0, len(shown))
	for i := len(shown) - 1; i >= 0; i-- {
		dl := shown[i]
		e := dl.Envelope.Event
		reason := dl.Reason
		if dl.Body != "" {
			reason = fmt.Sprintf("%s: %s", reason, truncate(dl.Body, 200))
		}
		out.DeadLetters = append(out.DeadLetters, DeadLetterRow{
			ID: dl.ID, Sink: sinkName(dl.Sink), CallID: b.nums.scrubNumber(e.ID, e.PhoneNumber), Type: string(e.Type),
			Number: b.nums.show(e.PhoneNumber), Ext: e.PhoneExtension, Status: dl.Status,
			Reason: b.nums.scrub(reason), At: dl.Time.UnixMilli(),
		})
	}
	return out
}

// sinkName is a dead letter's sink: register-event's dead letters were
// stored without one.
func sinkName(s string) string {
	if s == "" {
		return "robin"
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 { // not inside a UTF-8 sequence
		n--
	}
	return s[:n] + "…"
}

// buildHealth reads the bridge's health and renders it with the chart and
// the reasons events wait.
func (b *Board) buildHealth(ctx context.Context) HealthPart {
	var h Health
	if b.feeds.Health != nil {
		h = b.feeds.Health(ctx)
	}
	waiting := map[string]map[string]int{}
	if b.feeds.Pending != nil {
		for _, p := range b.feeds.Pending(0) {
			if waiting[p.Sink] == nil {
				waiting[p.Sink] = map[string]int{}
			}
			waiting[p.Sink][p.Reason]++
		}
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range h.Sources {
		s := &h.Sources[i]
		seen := b.sources[s.Name]
		if seen == nil {
			seen = &sourceSeen{ok: s.OK}
			b.sources[s.Name] = seen
		}
		if seen.ok != s.OK {
			seen.ok, seen.since = s.OK, now
		}
		seen.lastSignal = max(seen.lastSignal, s.LastSignal)
		s.LastSignal = seen.lastSignal
		if !seen.since.IsZero() {
			s.Since = seen.since.UnixMilli()
		}
		s.Detail = b.nums.scrub(s.Detail)
	}
	slices.SortFunc(h.Sources, func(x, y SourceHealth) int { return strings.Compare(x.Name, y.Name) })
	b.further = b.further[:0]
	for i := range h.Sinks {
		if !slices.Contains(b.o.Sinks, h.Sinks[i].Name) {
			b.further = append(b.further, h.Sinks[i].Name)
		}
		h.Sinks[i].Waiting = maps.Clone(waiting[h.Sinks[i].Name])
		if h.Sinks[i].Waiting == nil {
			h.Sinks[i].Waiting = map[string]int{}
		}
	}
	return HealthPart{Health: h, Chart: b.chart.minutes(now)}
}
