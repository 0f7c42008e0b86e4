package bridge

import (
	"cmp"
	"context"
	"errors"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/voipbridge/voipbridge/board"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx/threecx"
	"github.com/voipbridge/voipbridge/pbx/voipgrid"
	"github.com/voipbridge/voipbridge/pbx/webhook"
	"github.com/voipbridge/voipbridge/pbx/xelion"
	"github.com/voipbridge/voipbridge/sip"
)

// BoardConfig is the live call board (Config.Board). The board is on when
// ADMIN_TOKEN is set (log in with it) or BOARD_ALLOW_CIDRS lists networks
// that see it without logging in.
type BoardConfig struct {
	AllowCIDRs []string `env:"BOARD_ALLOW_CIDRS" envSeparator:","`
	// MaskNumbers shows only the last four digits of callers' numbers.
	MaskNumbers bool `env:"BOARD_MASK_NUMBERS" envDefault:"false"`
}

func (c BoardConfig) validate() error {
	_, err := c.allow()
	return err
}

func (c BoardConfig) allow() ([]netip.Prefix, error) {
	p, err := webhook.ParseCIDRs(c.AllowCIDRs)
	if err != nil {
		return nil, errors.New(strings.ReplaceAll(err.Error(), "WEBHOOK_ALLOW_CIDRS: ", "BOARD_ALLOW_CIDRS: "))
	}
	return p, nil
}

// newBoard returns the board, or nil when nobody could see it (neither
// ADMIN_TOKEN nor BOARD_ALLOW_CIDRS): then it is neither fed nor mounted.
func (b *Bridge) newBoard() *board.Board {
	allow, err := b.cfg.Board.allow()
	if err != nil || (b.cfg.AdminToken == "" && len(allow) == 0) {
		return nil
	}
	return board.New(board.Options{
		Token: b.cfg.AdminToken, Allow: allow, Mask: b.cfg.Board.MaskNumbers, Region: b.cfg.PhoneRegion,
		Done: b.draining, WriteTimeout: b.cfg.HTTP.WriteTimeout, Logger: b.log,
	})
}

// boardOnCommitted feeds each committed batch to next (another reader of
// the tracker's OnCommitted, such as routing's history) and then to the
// board.
func boardOnCommitted(brd *board.Board, next func([]events.Envelope)) func([]events.Envelope) {
	switch {
	case brd == nil:
		return next
	case next == nil:
		return brd.Committed
	}
	return func(batch []events.Envelope) {
		next(batch)
		brd.Committed(batch)
	}
}

// boardOnDelivery is the dispatcher's OnDelivery: the board, if any.
func boardOnDelivery(brd *board.Board) func(events.DeliveryOutcome) {
	if brd == nil {
		return nil
	}
	return brd.Delivered
}

// mountBoard serves the board on the admin listener (with the admin
// endpoints: on HTTP_ADDR without ADMIN_ADDR).
func (b *Bridge) mountBoard(brd *board.Board) {
	if brd == nil {
		return
	}
	err := brd.Mount(b.edge.admin, board.Feeds{
		Live:        b.tracker.Live,
		Pending:     b.pendingEvents,
		Health:      b.boardHealth,
		DeadLetters: b.journal.DeadLetters,
		Replay:      b.journal.ReplayDeadLetter,
		AgentName: func(source, ext string) string {
			a, _ := b.dir.Lookup(source, ext)
			return a.Name
		},
	})
	if err != nil {
		// The board's files are embedded: this is a broken build.
		b.log.Error("board not served", "err", err)
		return
	}
	b.log.Info("live call board on GET /", "login", b.cfg.AdminToken != "", "allow", strings.Join(b.cfg.Board.AllowCIDRs, ","), "masked", b.cfg.Board.MaskNumbers)
}

// boardHealth reads what the board shows under Health: the same checks as
// /readyz and /v1/status, the quota windows and the dead letters.
func (b *Bridge) boardHealth(ctx context.Context) board.Health {
	checks, intake := b.checks()
	h := board.Health{Intake: intake}

	last := map[string]time.Time{}
	for _, f := range b.tracker.Recent() {
		if f.At.After(last[f.Signal.Source]) {
			last[f.Signal.Source] = f.At
		}
	}
	listed := map[string]bool{}
	addSource := func(name, kind string) {
		if listed[name] {
			return
		}
		listed[name] = true
		s := board.SourceHealth{Name: name, Kind: kind, OK: true}
		if c, ok := checks[name]; ok && c != "ok" {
			s.OK, s.Detail = false, strings.TrimPrefix(c, "degraded: ")
		}
		if t := last[name]; !t.IsZero() {
			s.LastSignal = t.UnixMilli()
		}
		h.Sources = append(h.Sources, s)
	}
	if b.cfg.SIP.Enabled() {
		addSource(sip.SourceName, "subscriptions")
	}
	if b.cfg.ThreeCX.URL != "" {
		addSource(threecx.SourceName, "connection")
	}
	if b.cfg.Xelion.URL != "" {
		addSource(xelion.SourceName, "connection")
	}
	if b.cfg.VoIPGRID.Enabled {
		addSource(voipgrid.SourceName, "webhook")
	}
	addSource(webhook.Source, "webhook")
	for name := range last { // webhook profiles, named by their files
		addSource(name, "webhook")
	}

	n, age := b.tracker.Lag()
	h.Journal = board.JournalHealth{
		Kind: b.journalKind(), OK: checks["journal"] == "ok", Tracker: cmp.Or(b.tracker.Status(), "ok"),
		LagSignals: n, LagSeconds: age.Seconds(),
	}
	if !h.Journal.OK {
		h.Journal.Detail = checks["journal"]
	}
	if p, err := b.journal.Pending(ctx); err == nil {
		h.Journal.Pending = p
	}
	if b.journal.Embedded() {
		h.Journal.DiskFree, h.Journal.DiskTotal, _ = board.DiskSpace(b.cfg.DataDir)
	}

	sink := board.SinkHealth{Name: "robin", State: "ok", Breaker: b.breaker.State(), Paused: b.disp.Paused()}
	if err := b.deliveryCheck(); err != nil {
		sink.State = err.Error()
	}
	h.Sinks = []board.SinkHealth{sink}
	for _, s := range b.sinks {
		sh := board.SinkHealth{Name: s.name, State: "ok", Breaker: s.breaker.State(), Paused: s.disp.Paused()}
		if c := checks["delivery_"+s.name]; c != "ok" && c != "" {
			sh.State = strings.TrimPrefix(c, "degraded: ")
		}
		h.Sinks = append(h.Sinks, sh)
	}

	for _, u := range b.quota.Usage() {
		_, w, _ := strings.Cut(u.Window.String(), "/")
		h.Quota = append(h.Quota, board.QuotaWindow{
			Window: w, Used: u.Used, Limit: u.Window.Limit, Reserve: presenceReserve(u.Window.Limit, b.cfg.Quota.PresenceReserve),
		})
	}
	if d, err := events.NewJournalQueue(b.journal).DeadCount(ctx); err == nil {
		h.DeadLetters = d
	}
	return h
}

// pendingEvents lists the events waiting at every sink.
func (b *Bridge) pendingEvents(limit int) []events.PendingEvent {
	out := b.disp.Pending(limit)
	for _, s := range b.sinks {
		out = append(out, s.disp.Pending(limit)...)
	}
	return out
}

// presenceReserve is the part of a window's limit only presence may use,
// as robin.NewQuota sets it aside: rounded down, and events keep at least
// one request.
func presenceReserve(limit int, share float64) int {
	return limit - max(limit-int(math.Floor(float64(limit)*share+1e-7)), 1)
}
