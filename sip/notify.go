package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/sip/dialoginfo"
)

// Journal is where the monitor puts signals. PublishSignal returns nil only
// once the signal is durable; the monitor acknowledges a NOTIFY to the PBX
// only after every signal it carried was published.
type Journal interface {
	PublishSignal(ctx context.Context, s events.Signal) error
}

// handleNotify processes one NOTIFY and returns the response to send:
// 200 once its signals are journaled (or it carried none), 481 for a
// subscription we do not have, 489 for another event package, 500 when the
// journal failed (the PBX retries; nothing acknowledged is lost).
func (c *core) handleNotify(ctx context.Context, req *gosip.Request) (int, string) {
	if !isDialogEvent(req) {
		c.metrics.notifies.WithLabelValues(resultBadEvent).Inc()
		return statusBadEvent, "Bad Event"
	}
	sub := c.match(req)
	if sub == nil {
		c.metrics.notifies.WithLabelValues(resultUnknown).Inc()
		return gosip.StatusCallTransactionDoesNotExists, "Subscription Does Not Exist"
	}
	w := sub.w
	sub.setRemoteTarget(req.Contact())
	ss := parseSubState(req.GetHeader("Subscription-State"))

	result := resultOK
	resync := false
	if body := req.Body(); len(bytes.TrimSpace(body)) > 0 {
		doc, err := parseBody(req, body)
		if err != nil {
			// A body that cannot be decoded will not decode on a retry either;
			// answering an error would only make some PBXs end the
			// subscription. The next refresh brings the full state again.
			c.metrics.parseErrors.Inc()
			w.log.Warn("sip NOTIFY body unusable", "subscription", sub.callID, "err", err)
			result = resultParseError
		} else {
			seq := uint64(0)
			if cs := req.CSeq(); cs != nil {
				seq = uint64(cs.SeqNo)
			}
			var jerr error
			result, resync, jerr = w.apply(ctx, sub, doc, seq, time.Now())
			if jerr != nil {
				c.metrics.notifies.WithLabelValues(resultJournalError).Inc()
				w.log.Error("sip NOTIFY not journaled, answering 500", "subscription", sub.callID, "err", jerr)
				w.mbox.post(notice{sub: sub, kind: noticeResync})
				return gosip.StatusInternalServerError, "Journal Unavailable"
			}
		}
	}
	c.metrics.notifies.WithLabelValues(result).Inc()
	switch {
	case ss.state == "terminated":
		w.mbox.post(notice{sub: sub, kind: noticeTerminated, reason: ss.reason, retryAfter: ss.retryAfter})
	case ss.expires > 0:
		w.mbox.post(notice{sub: sub, kind: noticeExpires, expires: ss.expires})
	}
	if resync {
		w.mbox.post(notice{sub: sub, kind: noticeResync})
	}
	return gosip.StatusOK, "OK"
}

// match finds the subscription of a NOTIFY by Call-ID and tags.
func (c *core) match(req *gosip.Request) *subscription {
	cid, from, to := req.CallID(), req.From(), req.To()
	if cid == nil || from == nil || to == nil {
		return nil
	}
	sub := c.index.get(cid.Value())
	if sub == nil {
		return nil
	}
	toTag, _ := to.Params.Get("tag")
	fromTag, _ := from.Params.Get("tag")
	if !sub.matchNotify(toTag, fromTag) {
		return nil
	}
	return sub
}

// apply folds a document into the extension's state and journals the
// resulting signals, all under the extension's lock so that concurrent
// NOTIFYs are applied one at a time in version order. The first full
// document of a subscription also yields a snapshot of the extension,
// journaled after the signals of its dialogs. State is committed only after
// every signal was journaled.
func (w *watch) apply(ctx context.Context, sub *subscription, doc *dialoginfo.Document, seq uint64, now time.Time) (result string, resync bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if doc.HasVersion && sub.haveVersion && doc.Version <= sub.version {
		// RFC 4235 §4.1: an older or repeated version is discarded.
		return resultStale, false, nil
	}
	if doc.State == dialoginfo.Partial {
		// A partial document after a gap (or as the first document) cannot be
		// trusted to complete the picture: apply what it says and ask for full
		// state with a refresh (RFC 4235 §4.1).
		resync = !sub.haveVersion || !doc.HasVersion || doc.Version != sub.version+1
	}
	if doc.HasVersion {
		seq = doc.Version
	}
	next, signals := applyDoc(w.legs, w.ext, sub.callID, doc, seq, now)
	first := doc.State == dialoginfo.Full && !sub.snapshotted
	if first {
		signals = append(signals, snapshot(w.ext, sub.callID, doc, seq, now))
	}
	jctx, cancel := context.WithTimeout(ctx, w.c.journalTO)
	defer cancel()
	for _, s := range signals {
		err := w.c.journal.PublishSignal(jctx, s)
		switch {
		case errors.Is(err, events.ErrInvalidSignal):
			w.dropInvalid(s, err)
		case err != nil:
			return resultJournalError, false, fmt.Errorf("journal signal %s %s: %w", s.CallID, s.State, err)
		default:
			w.c.metrics.signals.Inc()
		}
	}
	w.legs = next
	sub.snapshotted = sub.snapshotted || first
	if doc.HasVersion {
		sub.version, sub.haveVersion = doc.Version, true
	}
	return resultOK, resync, nil
}

// dropInvalid counts and logs a signal the journal refused as invalid
// (clean and legID keep that from happening). No retry can change it:
// answered 500, the PBX would send the document again and again, and every
// later one of the extension with it. The line names the field and the
// problem, never the value the journal found unfit.
func (w *watch) dropInvalid(s events.Signal, err error) {
	w.c.metrics.dropped.WithLabelValues(reasonInvalid).Inc()
	field, problem := "", err.Error()
	if fe, ok := errors.AsType[*events.FieldError](err); ok {
		field, problem = fe.Field, fe.Problem
	}
	w.log.Warn("sip signal dropped: the journal refuses it as invalid", "reason", reasonInvalid, "field", field, "problem", problem, "event", s.State)
}

func parseBody(req *gosip.Request, body []byte) (*dialoginfo.Document, error) {
	if ct := req.ContentType(); ct != nil {
		mt, _, _ := strings.Cut(ct.Value(), ";")
		if mt = strings.ToLower(strings.TrimSpace(mt)); mt != dialoginfo.ContentType {
			return nil, fmt.Errorf("content type %q is not %s", clip(mt), dialoginfo.ContentType)
		}
	}
	return dialoginfo.Parse(body)
}

// isDialogEvent accepts Event: dialog (with any parameters) in the long or
// the compact form "o", which sipgo does not normalise.
func isDialogEvent(req *gosip.Request) bool {
	h := req.GetHeader("Event")
	if h == nil {
		h = req.GetHeader("o")
	}
	if h == nil {
		return false
	}
	pkg, _, _ := strings.Cut(h.Value(), ";")
	return strings.EqualFold(strings.TrimSpace(pkg), "dialog")
}

// subState is a parsed Subscription-State header (RFC 6665 §8.2.3).
type subState struct {
	state      string // active, pending, terminated (lower case)
	reason     string
	expires    time.Duration
	retryAfter time.Duration
}

func parseSubState(h gosip.Header) subState {
	var ss subState
	if h == nil {
		return ss
	}
	parts := strings.Split(h.Value(), ";")
	ss.state = strings.ToLower(strings.TrimSpace(parts[0]))
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.Trim(strings.TrimSpace(v), `"`)
		switch k {
		case "reason":
			ss.reason = strings.ToLower(v)
		case "expires":
			if n, ok := seconds(v); ok && n > 0 {
				ss.expires = time.Duration(n) * time.Second
			}
		case "retry-after":
			if n, ok := seconds(v); ok && n > 0 {
				ss.retryAfter = time.Duration(n) * time.Second
			}
		}
	}
	return ss
}

// maxSeconds bounds every duration a PBX sends us (Expires, Min-Expires,
// Retry-After): a week is more than any PBX grants, and no value can
// overflow a time.Duration.
const maxSeconds = 7 * 24 * 3600

// seconds parses a delta-seconds value, clamped to maxSeconds.
func seconds(v string) (int, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, false
	}
	return int(min(n, maxSeconds)), true
}

// clip shortens PBX-controlled text before it goes into an error or log.
func clip(s string) string {
	s = clean(s)
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// statusBadEvent is 489 Bad Event (RFC 6665 §8.3.1), which sipgo has no name for.
const statusBadEvent = 489
